#!/usr/bin/env bash
# The Python packages tools/bench/gpu.py needs that the lent H200's image lacks (or has at another version),
# as wheels for its Python 3.12, into .whl/ (git-ignored) for the device tool's `carry` (docs/gpu.md).
# Nothing can be fetched on that machine. About 20 MB. Run from anywhere, with a Python that has torch:
#
#     PYTHON=.venv/bin/python bash tools/bench/gpu_wheels.sh
#
# Ray (79 MB for cp312) does not fit the 64 MiB a call may carry, so the demo line reports itself skipped
# there; everything else runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
out=.whl
mkdir -p "$out"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$out" \
    hjson==3.1.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 omegaconf==2.4.0 transformers==5.24.0 regex==2026.11.19
# DeepSpeed ships a source archive only: its pure-Python wheel (no compiled ops: the bench uses torch's
# AdamW, and --offload-adam deepspeed JIT-compiles the CPU Adam there, where nvcc and ninja are)
DS_BUILD_OPS=0 "$python" -m pip wheel -q --no-deps --no-build-isolation -w "$out" deepspeed==0.19.8
ls -1 "$out"
du -sh "$out"
