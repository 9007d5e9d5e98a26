"""NetGPT on a DeepSpeed engine (ZeRO-3 shards from the start), and the CPU traps avoided on the way."""

from __future__ import annotations

import importlib
import os
import random
from typing import Any

import numpy as np
import torch

from netgpt.config import NetGPTConfig
from netgpt.train.ds_config import build_ds_config, zero_stage
from netgpt.train.frozen_steps import skip_frozen_sub_groups
from netgpt.train.stages import parameter_groups


def avoid_jit_builds() -> None:
    """DeepSpeed would JIT-compile its shared-memory allreduce op on CPU (~100 s); gloo works without it."""
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def name_local_size() -> None:
    """Tell DeepSpeed's CPU accelerator how many ranks share this node, as DeepSpeed's own launcher does.

    Its `device_count()` reads `LOCAL_SIZE`, which only that launcher sets; without it, it runs `numactl
    --hardware` in a subprocess every time it is asked, and ZeRO-3 asks at every gradient reduce-scatter:
    a fork of the Train worker every step (1.1 ms with numactl installed, 0.17 ms where it is not). The
    subprocess module enters `warnings.catch_warnings`, which forgets the warnings already shown, so the
    FutureWarning torch gives for DeepSpeed's deprecated collective calls was printed at every call, twice
    a step on each rank, into the worker's log. Ray Train sets `LOCAL_WORLD_SIZE` for the process group it
    builds, so it is the one to follow, over a `LOCAL_SIZE` left from another group. An accelerator other
    than the CPU's (CUDA) counts its devices itself and never reads `LOCAL_SIZE`."""
    local = os.environ.get("LOCAL_WORLD_SIZE")
    if local:
        os.environ["LOCAL_SIZE"] = local


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_engine(
    config: NetGPTConfig,
    feature_dims: dict[str, int],
    tokenizer,
    world_size: int,
    ds_template: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """NetGPT on a DeepSpeed engine: under ZeRO-3 the LLM is built straight into shards.

    `HfDeepSpeedConfig` makes transformers build (or load) the LLM inside `deepspeed.zero.Init` with its own
    weight initialisation; it is unset right after, because left alive it made a later rank-0-only HF export
    hang. The graph encoder, projector and heads are plain torch modules built outside `zero.Init` (PyG layers
    built inside it were seen uninitialised); `deepspeed.initialize` partitions them.

    `ds_template`: the DeepSpeed JSON as the driver read it (`read_ds_config`); None reads `train.ds_config`
    here."""
    import deepspeed
    import torch._dynamo  # noqa: F401  (first imported inside zero.Init, transformers 5 models fail: TypeError: Signature mismatch)
    import transformers.generation.utils  # noqa: F401
    from transformers.integrations import HfDeepSpeedConfig, unset_hf_deepspeed_config

    from netgpt.model.netgpt import NetGPT

    name_local_size()
    # DeepSpeed's comm layer must wrap Ray's process group before zero.Init, or zero.Init sees world size 1.
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    llm_hidden = _llm_hidden_size(config)
    ds_config = build_ds_config(config.train, world_size, llm_hidden, ds_template)
    seed_everything(config.train.seed)
    if zero_stage(ds_config) == 3:
        keep_alive = HfDeepSpeedConfig(ds_config)
        try:
            model = NetGPT.build(config.model, feature_dims, tokenizer)
        finally:
            del keep_alive
            unset_hf_deepspeed_config()
    else:
        model = NetGPT.build(config.model, feature_dims, tokenizer)
    if ds_config["bf16"]["enabled"]:
        _match_llm_dtype(model)
    leaves = model.zero3_leaf_modules()
    if zero_stage(ds_config) == 3 and leaves:
        # Layers that read parameters outside their own forward (HGTConv) are gathered whole, or ZeRO-3's
        # per-module gathering would hand them empty shards.
        from deepspeed.utils import set_z3_leaf_modules

        set_z3_leaf_modules(model, leaves)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=parameter_groups(model), config=ds_config)
    skip_frozen_sub_groups(engine.optimizer)
    return engine, ds_config


def _llm_hidden_size(config: NetGPTConfig) -> int:
    if not config.model.llm_path:
        return config.model.tiny_llm.hidden_size
    from netgpt.model.pretrained import llm_hf_config

    return int(llm_hf_config(config.model).get_text_config().hidden_size)


def param_count(module: torch.nn.Module) -> int:
    """Full parameter count, also for ZeRO-3 partitioned parameters (whose `numel()` is 0)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in module.parameters())


def _match_llm_dtype(model: torch.nn.Module) -> None:
    """Cast the parts built outside zero.Init (encoder, projector, heads) to bf16 like the LLM's shards.

    Under bf16 ZeRO-3 the LLM is born in bf16 inside zero.Init, the rest in float32; ZeRO-3 flattens all
    parameters into one buffer per group and refuses mixed dtypes."""
    for param in model.parameters():
        if not hasattr(param, "ds_id") and param.is_floating_point():
            param.data = param.data.to(torch.bfloat16)
