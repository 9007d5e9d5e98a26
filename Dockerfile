# The image every pod of k8s/ runs: Ray head and workers, the RayJob submitters, TensorBoard.
#   docker build -t registry.example.com/netgpt:0.1.0 .   (the tag is the package version, k8s/base sets it)
#
# Base: Ray's own image of the Ray this release is tested with (netgpt/ray_version.py: 2.60; pyproject.toml
# and constraints.txt pin the same), Python 3.11 as in CI, CUDA 12.8. It runs as its user `ray` (uid 1000,
# group `users`, gid 100), the uid the manifests' securityContext names; nothing here runs as root.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cu128
FROM ${RAY_IMAGE}

# torch: constraints.txt pins `torch==2.13.0` with no local label, and CI installs the CPU build of it. Here
# the CUDA 12.8 build of the same version comes from PyTorch's wheel index first (the CUDA of the wheel
# matches the base image's); `2.13.0+cu128` satisfies `==2.13.0` (PEP 440 ignores the local label), so the
# locked install below keeps it instead of fetching the CPU wheel. Change both CUDA tags together.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

USER 1000:100
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# Made by uid 1000 itself (a WORKDIR that does not exist yet may be created root-owned, and `pip install .`
# writes its build folder there).
RUN mkdir -p /home/ray/netgpt
WORKDIR /home/ray/netgpt

# The package and its dependencies, every version from the lock (constraints.txt), torch's CUDA build first.
COPY --chown=1000:100 constraints.txt pyproject.toml README.md ./
COPY --chown=1000:100 netgpt ./netgpt
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "$(grep '^torch==' constraints.txt)" \
    && pip install --no-cache-dir -c constraints.txt . \
    && rm -rf build netgpt.egg-info \
    && python -c "import torch, ray, deepspeed, netgpt; print(torch.__version__, ray.__version__)"

# The job scripts: RayJobs ship this folder as their working_dir. (The DeepSpeed configs ship inside the
# package, netgpt/ds_configs/.)
COPY --chown=1000:100 ray_jobs ./ray_jobs
