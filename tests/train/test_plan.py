"""The resource plan: parameter arithmetic against real models, shortfall messages, the presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import netgpt
from netgpt.cli import main as cli_main
from netgpt.config import load_config
from netgpt.graph.rows import ATTRIBUTE_TYPES
from netgpt.graph.types import feature_dims
from netgpt.train.plan import (
    GIB,
    InsufficientResources,
    LLMShape,
    ResourcePlan,
    ensure_resources,
)

REPO = Path(__file__).resolve().parents[2]
DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)
QWEN2_7B_PARAMS = 7_615_616_512
"""Qwen2-7B's published parameter count."""
BIG = {"CPU": 1e6, "GPU": 1e6, "memory": 1e15, "object_store_memory": 1e15}


def _meta(partition_bytes: list[int]) -> dict:
    return {"feature_dims": DIMS, "partitions": [{"bytes": b} for b in partition_bytes]}


@pytest.mark.parametrize("encoder", ["rgcn", "hgt"])
def test_counts_match_a_real_model_built_from_the_same_config(encoder, tokenizer):
    from netgpt.model.netgpt import NetGPT

    config = load_config(
        "demo",
        [
            f"model.encoder={encoder}",
            "model.hidden_size=16",
            "model.projector_layers=3",
            f"model.tiny_llm.vocab_size={len(tokenizer)}",
            "model.tiny_llm.hidden_size=32",
            "model.tiny_llm.intermediate_size=48",
        ],
    )
    plan = ResourcePlan.of(config, meta=_meta([100, 200]))
    model = NetGPT.build(config.model, DIMS, tokenizer)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert plan.params.encoder == count(model.encoder)
    assert plan.params.projector == count(model.projector)
    assert plan.params.llm == count(model.llm)
    assert plan.params.graph_head == count(model.graph_head)
    assert plan.params.prompt_head == count(model.prompt_head)
    assert plan.params.total == count(model)
    layer = count(model.llm.model.layers[0])
    assert plan.params.largest_unit == max(model.llm.get_input_embeddings().weight.numel(), layer)


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False}),
        ("mistral", {"tie_word_embeddings": True}),
        ("qwen2", {"tie_word_embeddings": False}),
    ],
)
def test_decoder_arithmetic_matches_transformers(kind, extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = AutoConfig.for_model(
        kind,
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=40,
        vocab_size=100,
        num_attention_heads=4,
        num_key_value_heads=2,
        **extra,
    )
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(hf)
    assert LLMShape.from_hf_config(hf).params() == sum(p.numel() for p in llm.parameters())


def test_qwen2_7b_count_is_the_published_one(qwen2_7b_dir):
    from transformers import AutoConfig

    shape = LLMShape.from_hf_config(AutoConfig.from_pretrained(qwen2_7b_dir, local_files_only=True))
    assert shape.params() == QWEN2_7B_PARAMS


def test_zero_stages_divide_what_they_shard(qwen2_7b_dir):
    def plan(ds_config: str) -> ResourcePlan:
        config = load_config(
            "xs_video", [f"model.llm_path={qwen2_7b_dir}", f"train.ds_config=ds_configs/{ds_config}"]
        )
        return ResourcePlan.of(config, meta=_meta([GIB] * 8))

    zero3, zero2, offload = plan("zero3.json"), plan("zero2.json"), plan("zero3_offload.json")
    p, n = zero3.params.total, 4
    assert zero3.device_bytes()["parameters"] == 2 * p // n
    assert zero3.device_bytes()["optimizer states"] == 12 * p // n
    assert zero2.device_bytes()["parameters"] == 2 * p  # ZeRO-2 keeps whole parameters on every GPU
    # gradients accumulated in fp32 (data_types.grad_accum_dtype in netgpt's configs), weights in bf16
    assert zero3.grad_bytes == zero2.grad_bytes == 4 and zero3.param_bytes == 2
    assert zero3.device_bytes()["gradients"] == zero2.device_bytes()["gradients"] == 4 * p // n
    assert offload.device_bytes()["optimizer states"] == offload.device_bytes()["parameters"] == 0
    assert offload.offloaded_bytes_per_rank() == (4 + 12) * p // n + 2 * p // n
    assert offload.memory > zero3.memory


def test_a_deepspeed_config_without_fp32_accumulation_counts_bf16_gradients(qwen2_7b_dir, tmp_path):
    template = json.loads((REPO / "netgpt" / "ds_configs" / "zero3.json").read_text(encoding="utf-8"))
    del template["data_types"]
    (tmp_path / "ds.json").write_text(json.dumps(template), encoding="utf-8")
    config = load_config(
        "xs_video", [f"model.llm_path={qwen2_7b_dir}", f"train.ds_config={tmp_path / 'ds.json'}"]
    )
    plan = ResourcePlan.of(config, meta=_meta([GIB] * 8))
    assert plan.grad_bytes == plan.param_bytes == 2
    assert plan.device_bytes()["gradients"] == 2 * plan.params.total // plan.num_workers


def test_a_rank_keeps_its_share_of_a_checkpoint_in_host_memory_while_it_is_written(qwen2_7b_dir):
    def plan(*extra: str) -> ResourcePlan:
        config = load_config("xs_video", [f"model.llm_path={qwen2_7b_dir}", *extra])
        return ResourcePlan.of(config, meta=_meta([GIB] * 8))

    background, in_place = plan(), plan("train.async_checkpoints=false")
    n, share = background.num_workers, background.checkpoint_bytes // background.num_workers
    assert share > 25 * GIB  # (12 + 2) bytes × 7.7 B parameters / 4 ranks, more than a 5 GB LLM shard
    loading = 5 * 10**9
    assert background.worker_host_memory - in_place.worker_host_memory == n * (share - loading)
    assert background.device_bytes() == in_place.device_bytes()  # the copy is on the host, not the GPU


def test_design_preset_with_a_7b_llm_needs_four_80gib_gpus(qwen2_7b_dir, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = load_config("xs_video", [f"model.llm_path={qwen2_7b_dir}"])
    plan = ResourcePlan.of(config)
    assert plan.zero_stage == 3 and plan.bf16 and not plan.offload_optimizer
    assert plan.params.llm == QWEN2_7B_PARAMS
    gpu = 80 * GIB
    # 16 bytes a parameter (bf16 weights and gradients, fp32 master and AdamW moments): ~123 GB of states
    assert 16 * plan.params.total > gpu
    assert plan.gpus_needed(gpu, states_only=True) == 2
    # with activations (28 layers × 34 × 8,000 tokens × 3,584) and logits, 3 GPUs are not enough
    assert plan.gpus_needed(gpu) == 4
    assert sum(plan.device_bytes(3).values()) > gpu >= sum(plan.device_bytes(4).values())
    assert cli_main(["plan", "--config", "xs_video", f"model.llm_path={qwen2_7b_dir}"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "GPUs of 80 GiB" in out and "stage 3" in out and "not checked" in out


def test_design_preset_stages_and_batch(qwen2_7b_dir):
    config = load_config("xs_video", [f"model.llm_path={qwen2_7b_dir}"])
    graph, align, tune = config.train.stages
    workers = config.train.num_workers
    assert graph.micro_batch_size * workers == 512 and graph.patience == 10 and graph.epochs == 100
    assert config.graph.fanouts == [50, 51] and config.model.max_prompt_tokens == 4000
    for stage in (align, tune):
        assert stage.micro_batch_size * stage.grad_accum * workers == 256
        assert (stage.lr, stage.warmup_steps, stage.max_steps, stage.min_lr_ratio) == (1e-5, 2000, 20000, 0.1)
    assert align.active_parts() == ["projector", "llm"]
    assert tune.active_parts() == ["encoder", "projector", "llm", "graph_head", "prompt_head"]
    assert config.train.ds_config == "ds_configs/zero3.json" and config.train.grad_clip == 1.0


def test_paper_preset_is_zero2_and_aligns_the_projector_alone(qwen2_7b_dir, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = load_config("xs_video_paper", [f"model.llm_path={qwen2_7b_dir}"])
    plan = ResourcePlan.of(config)
    assert plan.zero_stage == 2
    _, align, tune = config.train.stages
    assert align.active_parts() == ["projector"]
    assert "encoder" not in tune.active_parts()
    assert cli_main(["plan", "--config", "xs_video_paper", f"model.llm_path={qwen2_7b_dir}"]) == 0
    assert "stage 2" in capsys.readouterr().out


def _short_config(tmp_path: Path, *extra: str):
    return load_config(
        "demo",
        [
            "train.num_workers=4",
            "train.cpus_per_worker=8",
            "graph.num_partitions=8",
            f"graph.store_dir={tmp_path / 'no_store'}",
            *extra,
        ],
    )


def test_shortfalls_name_each_missing_resource(tmp_path):
    plan = ResourcePlan.of(_short_config(tmp_path, "train.use_gpu=true"))
    shortfalls = plan.check({**BIG, "CPU": 32, "GPU": 0})
    assert [s.message() for s in shortfalls] == [
        "needs 36 CPU, the cluster has 32 CPU: 4 Train workers × 8 CPU + 8 sampler actors × 0.5 CPU",
        "needs 4 GPU, the cluster has 0 GPU: 4 Train workers × 1 GPU",
    ]
    memory = plan.check({**BIG, "memory": GIB, "object_store_memory": 1e6})
    assert [s.resource for s in memory] == ["memory", "object_store_memory"]
    assert "4 ranks × graph.stream_buffer_mb 512 MB" in memory[1].message()
    assert plan.check(BIG) == []


def test_custom_placement_resources_are_planned_and_checked(tmp_path):
    config = _short_config(
        tmp_path,
        "train.worker_resources.netgpt_train=1",
        "graph.sampler_resources.netgpt_sampler=0.5",
        "graph.sampler_resources.netgpt_train=0.25",
    )
    plan = ResourcePlan.of(config)
    assert [s.message() for s in plan.check(BIG)] == [
        "needs 4 netgpt_sampler, the cluster has 0 netgpt_sampler: 8 sampler actors × 0.5 netgpt_sampler",
        "needs 6 netgpt_train, the cluster has 0 netgpt_train: 4 Train workers × 1 netgpt_train + 8 sampler "
        "actors × 0.25 netgpt_train",
    ]
    assert plan.check({**BIG, "netgpt_sampler": 4, "netgpt_train": 6}) == []
    assert (
        "netgpt_train",
        "6",
        "4 Train workers × 1 netgpt_train + 8 sampler actors × 0.25 netgpt_train",
    ) in (plan.rows())


def test_sampler_memory_comes_from_the_store_partition_sizes(tmp_path):
    config = _short_config(tmp_path, "graph.samplers_per_partition=2")
    plan = ResourcePlan.of(config, meta=_meta([GIB, 2 * GIB]))
    assert plan.num_samplers == 4  # the store's 2 partitions × 2, not graph.num_partitions
    cache = config.graph.remote_cache_rows * 4 * (DIMS["video"] + DIMS["comment"])
    cache += config.graph.remote_cache_rows * 4 * sum(DIMS[t] for t in ATTRIBUTE_TYPES)
    # each actor: its partition, its cache of other partitions' rows at capacity, its process
    assert plan.sampler_memory == 2 * (GIB + 2 * GIB + 2 * cache) + 4 * GIB // 2
    one = ResourcePlan.of(config, meta=_meta([GIB]))
    assert one.sampler_memory == 2 * GIB + 2 * GIB // 2  # one partition fetches nothing: no cache
    assert ResourcePlan.of(config).sampler_memory is None  # no store: unknown, not checked


def test_a_cluster_that_cannot_grow_fails_at_once(tmp_path):
    config = _short_config(tmp_path)
    with pytest.raises(
        InsufficientResources, match=r"needs 36 CPU, the cluster has 32 CPU: .*cluster_can_grow"
    ):
        ensure_resources(config, lambda: {**BIG, "CPU": 32}, sleep=pytest.fail)


def test_a_growing_cluster_is_waited_for_then_given_up_on(tmp_path):
    config = _short_config(tmp_path, "train.cluster_can_grow=true", "train.resource_wait_s=30")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    logs: list[str] = []
    sizes = iter([16, 32, 40])
    plan = ensure_resources(
        config, lambda: {**BIG, "CPU": next(sizes)}, sleep=sleep, clock=lambda: now[0], log=logs.append
    )
    assert plan.cpus == 36 and len(logs) == 2 and "waiting for the cluster to grow" in logs[0]
    with pytest.raises(InsufficientResources, match=r"after waiting train.resource_wait_s=30 s"):
        ensure_resources(
            config, lambda: {**BIG, "CPU": 32}, sleep=sleep, clock=lambda: now[0], log=logs.append
        )


# The k8s manifests: tests/k8s/test_plan_fits.py renders each overlay and checks its run's plan fits it.


def test_train_fails_before_building_anything_on_a_short_cluster(tmp_path, monkeypatch):
    import ray

    from netgpt.train import run

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {**BIG, "CPU": 32})
    monkeypatch.setattr(run, "build_trainer", lambda *args: pytest.fail("built a trainer"))
    with pytest.raises(InsufficientResources, match=r"needs 36 CPU, the cluster has 32 CPU"):
        run.train(_short_config(tmp_path), progress=object())


def test_plan_command_exits_9_when_the_given_cluster_is_short(tmp_path, monkeypatch, capsys):
    import ray

    from netgpt import cli

    monkeypatch.setattr(cli, "check_ray_address", lambda address: None)  # no cluster at ray://head:10001
    monkeypatch.setattr(ray, "init", lambda **kwargs: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {**BIG, "GPU": 0})
    overrides = ["train.use_gpu=true", f"graph.store_dir={tmp_path / 'no_store'}"]
    assert cli_main(["plan", "--config", "demo", "--address", "ray://head:10001", *overrides]) == 9
    assert (
        "netgpt plan: error: the run needs 2 GPU, the cluster has 0 GPU: 2 Train workers × 1 GPU"
        in capsys.readouterr().err
    )
    monkeypatch.setattr(ray, "cluster_resources", lambda: BIG)
    assert cli_main(["plan", "--config", "demo", "--address", "ray://head:10001", *overrides]) == 0
    assert "has what the plan needs" in capsys.readouterr().out


def test_the_disk_row_counts_every_checkpoint_on_disk_at_once_and_the_export(tmp_path):
    plan = ResourcePlan.of(_short_config(tmp_path, f"train.storage_path={tmp_path / 'runs'}"))
    p = plan.params.total
    per_checkpoint = (12 + 4) * p + 4 * 2**20  # fp32 on CPU; 1 MiB for each of the 4 ranks
    per_best = (4 + 4) * p + 4 * 2**20  # the master weights, no AdamW moments
    assert (plan.checkpoint_bytes, plan.best_checkpoint_bytes) == (per_checkpoint, per_best)
    # 2 kept + the next; 3 stages' best + a new one written beside the old; model/ in fp32
    assert plan.disk_bytes == (2 + 1) * per_checkpoint + (3 + 1) * per_best + 4 * p
    row = next(row for row in plan.rows() if row[0] == "disk")
    assert "3 checkpoints at once" in row[2] and "4 best (3 stages' + a new one)" in row[2]
    assert str(tmp_path / "runs" / "netgpt") in row[2]
    quiet = ResourcePlan.of(
        _short_config(tmp_path, "train.val_every_epoch=false", "train.keep_checkpoints=1")
    )
    assert quiet.disk_bytes == (1 + 1) * per_checkpoint + 4 * p  # no validation, no best
    assert "best" not in next(row for row in quiet.rows() if row[0] == "disk")[2]


def test_a_best_keeps_its_moments_under_zero2_and_with_the_optimizer_on_nvme(tmp_path):
    """`netgpt/train/moments.py` leaves the moments out under ZeRO-3 only, and not when they are swapped to
    NVMe: the plan counts those bests as whole checkpoints."""
    import json

    zero3 = json.loads((Path(netgpt.__file__).parent / "ds_configs" / "zero3_offload.json").read_text())
    zero3["zero_optimization"]["offload_optimizer"]["device"] = "nvme"
    nvme = tmp_path / "zero3_nvme.json"
    nvme.write_text(json.dumps(zero3))
    for ds_config in ("ds_configs/zero2.json", str(nvme)):
        plan = ResourcePlan.of(_short_config(tmp_path, f"train.ds_config={ds_config}"))
        assert plan.best_checkpoint_bytes == plan.checkpoint_bytes, ds_config
        assert f"P·(12 + {plan.param_bytes})" in next(row for row in plan.rows() if row[0] == "disk")[2]
    zero3_offload = ResourcePlan.of(_short_config(tmp_path, "train.ds_config=ds_configs/zero3_offload.json"))
    assert zero3_offload.best_checkpoint_bytes < zero3_offload.checkpoint_bytes  # on the host: left out


def test_a_disk_with_less_free_space_than_the_run_may_write_is_named(tmp_path, monkeypatch, capsys):
    import shutil as real_shutil

    from netgpt.train import plan as plan_module

    config = _short_config(tmp_path, f"train.storage_path={tmp_path / 'runs'}")
    plan = ResourcePlan.of(config)
    assert plan.disk_note() is None  # this machine's disk holds the demo's few MB
    free = [plan.disk_bytes - 1]
    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(plan_module.shutil, "disk_usage", lambda path: usage._replace(free=free[0]))
    note = plan.disk_note()
    assert note is not None and str(tmp_path) in note and "train.keep_checkpoints" in note  # nearest folder
    run_dir = tmp_path / "runs" / "netgpt"
    run_dir.mkdir(parents=True)
    (run_dir / "step-1").write_bytes(b"\0" * 10)  # a resumed run replaces what it wrote
    assert plan.disk_note() is None
    free[0] = 0
    assert f"{run_dir} has 0.00 GiB free" in plan.disk_note()
    assert cli_main(["plan", "--config", "demo", f"train.storage_path={tmp_path / 'runs'}"]) == 0
    assert f"warning: {run_dir} has 0.00 GiB free" in " ".join(capsys.readouterr().out.split())


def test_train_warns_of_a_short_disk_before_it_starts(tmp_path, monkeypatch, capsys):
    import ray

    from netgpt.train import plan as plan_module
    from netgpt.train import run

    class Built(Exception):
        pass

    def build_trainer(*args):
        raise Built

    usage = plan_module.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(plan_module.shutil, "disk_usage", lambda path: usage._replace(free=0))
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: BIG)
    monkeypatch.setattr(run, "build_trainer", build_trainer)
    with pytest.raises(Built):
        run.train(_short_config(tmp_path, f"train.storage_path={tmp_path / 'runs'}"), progress=object())
    assert "netgpt train: warning: " in capsys.readouterr().err
