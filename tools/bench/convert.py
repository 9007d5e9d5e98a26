"""Benchmark: peak memory of `netgpt convert` on a ZeRO-3 checkpoint of a NetGPT with a 0.5 B-parameter LLM.

Prints ONE JSON line: the fp32 model size, the conversion's peak RSS, their ratio (goal <= 1.3), its
seconds, and the baseline measured in the same run: DeepSpeed's non-lazy
`get_fp32_state_dict_from_zero_checkpoint` (the whole state dict at once), its peak RSS and ratio.

    python tools/bench/convert.py [--layers 24] [--keep]

The checkpoint is made once, by one process (world size 1, ZeRO-3, CPU): the LLM is a Qwen2 with
Qwen2-0.5B's shapes (hidden 896, 24 layers, vocabulary 151,936; about 494 M parameters), randomly
initialised from config and saved as an HF folder that the run's config points to (`model.llm_path`), so
the trainer's own `build_engine` loads it straight into ZeRO-3 shards; then `engine.save_checkpoint`. The
conversion and the baseline each run in a fresh child process that reports its own peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`, imports included). Everything is written under one temporary folder,
deleted at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, beside this file

from results import emit, keep_stdout_for_results  # noqa: E402

BUILD = r"""
import json, sys, time
from pathlib import Path
import torch, torch.distributed as dist
folder, layers = Path(sys.argv[1]), int(sys.argv[2])
started = time.perf_counter()
import ray
from transformers import AutoModelForCausalLM, Qwen2Config
from netgpt.config import load_config, save_config
from netgpt.data.prepare import prepare
from netgpt.data.synthetic import write_synthetic
from netgpt.graph.build import build_graph
from netgpt.graph.store import read_meta
from netgpt.model.tokenizer import train_tokenizer
from netgpt.train.checkpoint import DS_TAG, STATE_FILE, TrainerState
from netgpt.train.engine import avoid_jit_builds, build_engine, param_count

# the LLM: Qwen2-0.5B's shapes, random weights, saved as the HF folder the run loads
tokenizer = train_tokenizer([f"video {i} dumplings #food made at home" for i in range(200)], 512)
qwen = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=layers,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
    bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    pad_token_id=tokenizer.pad_token_id)
llm_dir = folder / "qwen2"
AutoModelForCausalLM.from_config(qwen).save_pretrained(llm_dir)
tokenizer.save_pretrained(llm_dir)
# the run: config.yaml, tokenizer/, a graph store (60 synthetic videos: convert reads its feature dims)
run = folder / "run"
config = load_config("demo", [f"model.llm_path={llm_dir}", "train.num_workers=1",
    f"graph.store_dir={folder / 'graph'}", f"train.storage_path={folder}", "train.run_name=run"])
prepare(write_synthetic(folder / "raw.json", videos=60, seed=0), folder / "tables", config.data)
build_graph(folder / "tables", config.graph, folder / "graph")
ray.shutdown()
dims = read_meta(folder / "graph")["feature_dims"]
save_config(config, run)
tokenizer.save_pretrained(run / "tokenizer")
# world size 1, ZeRO-3, the trainer's own engine, one checkpoint
from gpu import init_process_group  # tools/bench
init_process_group(torch.device("cpu"), "gloo")
avoid_jit_builds()
engine, _ = build_engine(config, dims, tokenizer, world_size=1)
params = param_count(engine.module)
checkpoint = run / "step-00000001-r0"
engine.save_checkpoint(str(checkpoint), tag=DS_TAG)
(checkpoint / STATE_FILE).write_text(TrainerState(stage_index=2, stage_step=1, global_step=1).to_json())
dist.destroy_process_group()
print(json.dumps({"params": params, "checkpoint": str(checkpoint), "seconds": time.perf_counter() - started}))
"""

CONVERT = r"""
import json, resource, sys, time
started = time.perf_counter()
from netgpt.convert import convert
converting = time.perf_counter()
convert(sys.argv[1], sys.argv[2])
done = time.perf_counter()
print(json.dumps({"seconds": done - converting, "wall_s": done - started,
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

BASELINE = r"""
import contextlib, json, resource, sys, time
started = time.perf_counter()
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
loading = time.perf_counter()
with contextlib.redirect_stdout(sys.stderr):
    state = get_fp32_state_dict_from_zero_checkpoint(sys.argv[1], tag="ds")
done = time.perf_counter()
print(json.dumps({"seconds": done - loading, "wall_s": done - started, "tensors": len(state),
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _child(script: str, *args: str) -> dict:
    paths = [str(REPO), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # the repo, and this folder for gpu.py
    run = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise SystemExit(f"child failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers (24: Qwen2-0.5B's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    keep_stdout_for_results()
    folder = Path(tempfile.mkdtemp(prefix="netgpt-bench-convert-"))
    try:
        built = _child(BUILD, str(folder), str(args.layers))
        fp32_bytes = 4 * built["params"]
        ours = _child(CONVERT, built["checkpoint"], str(folder / "out"))
        out_bytes = sum(p.stat().st_size for p in (folder / "out").rglob("*") if p.is_file())
        shutil.rmtree(folder / "out")
        base = _child(BASELINE, built["checkpoint"])
        emit(
            {
                "bench": "convert",
                "params": built["params"],
                "fp32_model_bytes": fp32_bytes,
                "peak_rss_bytes": ours["peak_rss"],
                "ratio": round(ours["peak_rss"] / fp32_bytes, 3),
                "seconds": round(ours["seconds"], 1),
                "wall_s_with_imports": round(ours["wall_s"], 1),
                "out_bytes": out_bytes,
                "baseline_deepspeed_nonlazy_peak_rss_bytes": base["peak_rss"],
                "baseline_ratio": round(base["peak_rss"] / fp32_bytes, 3),
                "baseline_seconds": round(base["seconds"], 1),
                "checkpoint_build_s": round(built["seconds"], 1),
            }
        )
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
