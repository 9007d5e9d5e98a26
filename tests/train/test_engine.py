"""The DeepSpeed engine as the workers build it (one process, ZeRO-3): the HGT encoder's layers are ZeRO-3
leaves and train; no parameter is kept whole on every rank; a pretrained LLM's rows for the graph tokens are
its old rows' mean in the shards; a step starts no subprocess."""

import subprocess

import deepspeed
import torch
from transformers import AutoModelForCausalLM

from netgpt.graph.types import feature_dims
from netgpt.model.encoder import HGTLayer
from netgpt.model.llm import tiny_llm_config
from netgpt.model.tokenizer import add_graph_tokens
from netgpt.train.engine import avoid_jit_builds, build_engine, name_local_size
from netgpt.train.monitor import StepMeter
from netgpt.train.stages import freeze_for_stage, set_stage_hparams
from netgpt.train.step import train_step

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)


def _receives_no_messages(name: str) -> bool:
    """HGTConv's output layer or skip weight of a node type other than video (only video's run)."""
    parts = name.split(".")
    return ("out_lin" in parts or "skip" in parts) and "video" not in parts


def test_hgt_layers_are_zero3_leaves_and_train(tokenizer, process_group, make_tiny_config, batch_maker):
    config = make_tiny_config()
    config.model.encoder = "hgt"
    config.model.hgt_heads = 2
    for stage in config.train.stages:
        stage.weight_decay = 0.0  # decay alone moves every weight: the gradients must
    avoid_jit_builds()
    engine, ds_config = build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)
    assert ds_config["zero_optimization"]["stage"] == 3
    layers = [m for m in engine.module.encoder.modules() if isinstance(m, HGTLayer)]
    assert layers and all(getattr(m, "_z3_leaf", False) for m in layers)
    stage = config.train.stages[0]  # graph pretraining: the encoder and the graph head
    active = freeze_for_stage(engine.module, stage)
    set_stage_hparams(engine.optimizer, stage, active, factor=1.0)

    def hgt_weights() -> list[torch.Tensor]:
        return [p.ds_tensor.detach().clone() for m in layers for p in m.parameters()]

    before = hgt_weights()
    losses = [
        train_step(engine, [batch_maker(2, seed=1)], stage, engine.module.prompt_builder(), StepMeter())[
            "loss"
        ]
        for _ in range(3)
    ]
    assert all(torch.isfinite(torch.tensor(losses)))
    # every weight moves but the output layers and skips of the node types that receive no messages (HGTConv
    # as the leaf left all of them where they were)
    names = [name for layer in layers for name, _ in layer.named_parameters()]
    still = [name for name, a, b in zip(names, before, hgt_weights(), strict=True) if torch.equal(a, b)]
    assert all(_receives_no_messages(name) for name in still), still


def test_zero3_keeps_no_parameter_whole(engine):
    """Parameters kept whole on every rank are gathered after each optimizer step with one collective each
    (dozens of tiny ones a step for this model); partitioned, they travel inside their module's coalesced
    fetch. Every parameter, biases and norms included, is partitioned."""
    engine, _ = engine
    params = list(engine.module.parameters())
    assert params and not any(getattr(p, "ds_persist", True) for p in params)
    assert not engine.optimizer.persistent_parameters


def test_deepspeed_counts_the_local_ranks_from_ray_trains_environment(monkeypatch):
    from deepspeed.accelerator import get_accelerator

    monkeypatch.delenv("LOCAL_SIZE", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    name_local_size()
    assert get_accelerator().device_count() == 2
    monkeypatch.setenv("LOCAL_SIZE", "4")  # left from another process group
    name_local_size()
    assert get_accelerator().device_count() == 2


def test_a_zero3_step_starts_no_subprocess(engine, batch_maker, monkeypatch):
    """Not told the local size, DeepSpeed's CPU accelerator ran `numactl --hardware` in a subprocess at every
    gradient reduce-scatter: a fork of the worker every step."""
    engine, config = engine
    stage = config.train.stages[0]
    set_stage_hparams(engine.optimizer, stage, freeze_for_stage(engine.module, stage), factor=1.0)
    started = []
    popen_init = subprocess.Popen.__init__

    def counted(self, args, *rest, **kwargs):
        started.append(args)
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", counted)
    for _ in range(2):
        train_step(engine, [batch_maker(2, seed=1)], stage, engine.module.prompt_builder(), StepMeter())
    assert started == []


def test_a_pretrained_llm_gets_its_new_token_rows_in_the_zero3_shards(
    tokenizer, process_group, make_tiny_config, tmp_path
):
    config = make_tiny_config()
    total = len(add_graph_tokens(tokenizer))
    llm_config = tiny_llm_config(config.model.tiny_llm, tokenizer, config.model)
    llm_config.vocab_size = old = total - 3  # a pretrained LLM without rows for the last 3 tokens
    AutoModelForCausalLM.from_config(llm_config).save_pretrained(tmp_path / "llm")
    before = AutoModelForCausalLM.from_pretrained(tmp_path / "llm").get_input_embeddings().weight
    config.model.llm_path = str(tmp_path / "llm")
    avoid_jit_builds()
    engine, _ = build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)
    weight = engine.module.llm.get_input_embeddings().weight
    with deepspeed.zero.GatheredParameters([weight]):
        grown = weight.detach().clone()
    assert grown.shape[0] == total
    torch.testing.assert_close(grown[:old], before)
    torch.testing.assert_close(grown[old:], before.mean(dim=0).expand(3, -1))
