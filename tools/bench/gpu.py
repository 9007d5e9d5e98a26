"""GPU check: the demo on one GPU worker, then NetGPT with Qwen2-0.5B/1.5B-shaped LLMs under ZeRO-3.

Prints one JSON line per measurement on stdout (progress and estimates go to stderr):

- `"what": "matmul_peak"`: the chip's bf16 matmul rate measured in this run (8192³, mean of timed products
  after warm-ups); every MFU below is against it (`mfu`), and against the datasheet table of
  `netgpt.train.monitor.PEAK_BF16_FLOPS` too (`mfu_table`, what TensorBoard uses).
- `"what": "numa_cores"`: the cores `train.bind_cores=true` would bind GPU 0's worker to
  (`netgpt.train.cores.gpu_cores`: its share of the GPU's NUMA node), beside the cores this process may
  use, or the error that left it unbound (CUDA only).
- `"what": "demo"`: `netgpt demo`'s config with `train.use_gpu=true train.num_workers=1` (Ray Train, NCCL,
  bf16, ZeRO-3), its wall time and `netgpt evaluate`'s table (skipped with `--skip-demo`, or when Ray is
  missing).
- `"what": "train_step"`: one setting of an LLM built from config inside NetGPT (RGCN encoder, projector,
  heads) on synthetic contract-shaped batches, one process (world size 1), the engine built by
  `build_engine`, steps run by the trainer's own `train_step` (fine-tune stage: every part trains, answer
  cross-entropy + prompt regression). Settings: LLM shape x ZeRO-3 with/without CPU offload x activation
  checkpointing x prompt length x micro-batch (1, 2, 4, ... until out of memory, `--max-micro-batch`, or
  `--max-tokens` per micro-batch). Figures: step_s, tokens_per_s, tflops (model FLOPs as `train_step`
  counts them for TensorBoard's MFU: `netgpt.train.monitor.FlopCounter`, attention included), mfu,
  peak_mem_gib (`torch.cuda.max_memory_allocated`, reset per setting). A setting is `"skipped": reason`
  when its estimate does not fit what is left of `--budget-s`, `"oom": true` when it ran out of memory.
- `"what": "checkpoint"`: after each engine's settings, a checkpoint of it written in place and one written
  in the background beside steps of its last setting, as the trainer writes them
  (`tools/bench/checkpoint_save.py`: how long each stops training, the steps beside the write).

On a GPU machine with the project installed (7 minutes: the demo, then as many settings as the rest of
the default `--budget-s 420` allows; `--skip-demo` gives the settings all of it):

    PYTHONUNBUFFERED=1 python tools/bench/gpu.py | tee gpu.jsonl

On this workplace's lent H200 (no Ray there: `--skip-demo`; docs/gpu.md has the exact device call, which
first installs the wheels `tools/bench/gpu_wheels.sh` prepares):

    python3 tools/bench/gpu.py --skip-demo --budget-s 400

On CPU (the test, tests/tools/test_gpu_bench.py: gloo, fp32, tiny Qwen2 shapes, prompts of 64 tokens):

    python tools/bench/gpu.py --tiny --skip-demo --budget-s 60
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, also when a test loads this file

import torch  # noqa: E402
from results import emit, keep_stdout_for_results  # noqa: E402

SHAPES = {
    # the shapes of Qwen2-0.5B and Qwen2-1.5B; `tiny_llm_config` ties the embeddings, as those models do
    "0.5b": dict(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864),
    "1.5b": dict(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, intermediate_size=8960),
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128),
}
VOCAB = {"0.5b": 151936, "1.5b": 151936, "tiny": 1024}
GRAPH_HIDDEN = {"0.5b": 1024, "1.5b": 1024, "tiny": 32}
"""The RGCN's hidden size (ModelConfig's default, the paper's) for the real shapes; small for tiny."""
FAKE_OOM_ENV = "NETGPT_GPU_BENCH_FAKE_OOM_TOKENS"
"""Tests only: a setting of at least this many tokens per micro-batch raises an out-of-memory error after
its first warm-up step, so the recovery path (report, drop the engine, build the next) runs on CPU too."""
DEMO_ESTIMATE_S = 240.0
CHECKPOINT_BYTES_PER_PARAM = 16 + 8
"""A checkpoint's bytes per parameter at most (fp32 master and AdamW moments, the weights in fp32), and a
best's (the same without the moments)."""
CHECKPOINT_WRITE_BYTES_PER_S = 1e9
"""An assumed local-disk pace, for the estimate of the checkpoint line (a checkpoint written twice)."""
BUILD_ESTIMATE_S = {"0.5b": 25.0, "1.5b": 40.0, "tiny": 10.0}
"""Seconds to build an engine before one was measured (model inside zero.Init + deepspeed.initialize)."""


def note(text: str) -> None:
    print(f"[gpu bench] {text}", file=sys.stderr, flush=True)


class Budget:
    """Wall-clock budget of the whole run: `left()` seconds remain; `fits(estimate)` says whether to start."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def fits(self, estimate_s: float) -> bool:
        return estimate_s <= self.left()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- matmul peak


def matmul_peak(device: torch.device, n: int, repeats: int = 10) -> dict:
    """FLOP/s of an n³ matmul (bf16 on GPU, fp32 on CPU), the mean of `repeats` timed products."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    seconds = (time.perf_counter() - started) / repeats
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "flops": 2.0 * n**3 / seconds}


# ---------------------------------------------------------------- the demo on one GPU worker


def run_demo_once(folder: Path) -> dict:
    """`netgpt demo` with `train.use_gpu=true train.num_workers=1`, its outputs in `folder`."""
    import ray

    from netgpt.config import load_config
    from netgpt.demo import run_demo
    from netgpt.evaluate.run import COLUMNS

    config = load_config(
        "demo",
        [
            "train.use_gpu=true",
            "train.num_workers=1",
            f"data.tables_dir={folder / 'tables'}",
            f"graph.store_dir={folder / 'graph'}",
            f"train.storage_path={folder / 'ray'}",
        ],
    )
    started = time.perf_counter()
    report = run_demo(config)  # its table goes to stderr (keep_stdout_for_results)
    wall = time.perf_counter() - started
    ray.shutdown()
    table = [
        {"model": model, "prediction": prediction, **{c: _finite(getattr(m, c)) for c in COLUMNS}}
        for model, prediction, m in report.rows()
    ]
    return {"wall_s": round(wall, 1), "split": report.split, "table": table}


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- synthetic batches and prompts


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer of exactly `vocab_size` ids (eos, pad and the graph tokens among them): the
    LLM's vocabulary is `len(tokenizer)`, and the prompts here are token ids, never text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from netgpt.model.tokenizer import EOS, GRAPH_TOKENS, PAD, add_graph_tokens

    specials = [EOS, PAD, *GRAPH_TOKENS]
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), vocab_size)})
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, eos_token=EOS, pad_token=PAD)
    add_graph_tokens(tokenizer)
    assert len(tokenizer) == vocab_size, (len(tokenizer), vocab_size)
    return tokenizer


def make_batch(num_seeds: int, feature_dims: dict[str, int], seed: int = 0):
    from netgpt.graph.example_batch import example_batch

    return example_batch(num_seeds, feature_dims, seed)


class SyntheticPrompts:
    """Stands in for `PromptBuilder` in `train_step`: every prompt is exactly `length` tokens (no padding),
    random ordinary ids with `<|graph_start|>` `<|graph_pad|>`×k `<|graph_end|>` in the middle, as the
    template places them, and a two-token answer (level digit, eos) at the end carrying the labels."""

    def __init__(self, tokenizer, length: int, num_graph_tokens: int, seed: int = 0) -> None:
        from netgpt.model.tokenizer import GRAPH_END, GRAPH_PAD, GRAPH_START

        self.length = length
        self.graph_ids = tokenizer.convert_tokens_to_ids(
            [GRAPH_START, *[GRAPH_PAD] * num_graph_tokens, GRAPH_END]
        )
        self.eos = tokenizer.eos_token_id
        self.first_ordinary = 5  # eos, pad and the three graph tokens come first (synthetic_tokenizer)
        self.vocab = len(tokenizer)
        self.generator = torch.Generator().manual_seed(seed)

    def encode(self, seed_fields: list[dict], with_answer: bool):
        from netgpt.model.prompt import PromptBatch

        rows = len(seed_fields)
        answer = 2 if with_answer else 0
        ids = torch.randint(self.first_ordinary, self.vocab, (rows, self.length), generator=self.generator)
        start = (self.length - answer) // 2
        ids[:, start : start + len(self.graph_ids)] = torch.tensor(self.graph_ids)
        labels = torch.full_like(ids, -100)
        if with_answer:
            digits = torch.tensor([int(f["level"]) for f in seed_fields]) + self.first_ordinary
            ids[:, -2], ids[:, -1] = digits, self.eos
            labels[:, -2:] = ids[:, -2:]
        mask = torch.ones_like(ids)
        last = torch.full((rows,), self.length - answer - 1, dtype=torch.long)
        return PromptBatch(ids, mask, labels, last)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Group:
    """What one engine serves: its prompt lengths and micro-batches are swept on it."""

    shape: str
    offload: bool
    checkpointing: bool

    def describe(self) -> dict:
        return {
            "shape": self.shape,
            "zero": "zero3_offload" if self.offload else "zero3",
            "gradient_checkpointing": self.checkpointing,
        }


PRIORITY = {
    # (1.5b shape, offload, checkpointing): a baseline, then the larger LLM (the production 7B's nearer
    # relative) with and without checkpointing and with offload, then the rest
    (False, False, False): 0,
    (True, False, False): 1,
    (True, False, True): 2,
    (True, True, True): 3,
    (False, False, True): 4,
    (False, True, True): 5,
    (True, True, False): 6,
    (False, True, False): 7,
}


def plan(args: argparse.Namespace) -> list[Group]:
    """Groups in order of interest (`PRIORITY`), so a short budget keeps the most useful."""
    offloads = {"both": (False, True), "off": (False,), "only": (True,)}[args.offload]
    checkpointing = {"both": (False, True), "false": (False,), "true": (True,)}[args.checkpointing]
    groups = [Group(s, o, c) for s in args.shapes for o in offloads for c in checkpointing]
    return sorted(groups, key=lambda g: PRIORITY[(g.shape == "1.5b", g.offload, g.checkpointing)])


def micro_batches(args: argparse.Namespace, length: int) -> list[int]:
    sizes, size = [], 1
    while size <= args.max_micro_batch and size * length <= args.max_tokens:
        sizes.append(size)
        size *= 2
    return sizes


# ---------------------------------------------------------------- engine


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group(
    device: torch.device, gpu_backend: str, rank: int = 0, world_size: int = 1, port: int | None = None
) -> None:
    """A process group of `world_size` processes on this machine as Ray Train sets one up (by default one
    process, meeting on a free port): gloo on CPU, gloo+NCCL on a GPU (the trainer's small collectives run
    on the engine's device, and NCCL has no CPU tensors). A finite timeout, so that a hanging collective
    fails loudly instead of eating the device time."""
    from datetime import timedelta

    import torch.distributed as dist

    if dist.is_initialized():
        return
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port if port is not None else free_port()),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    backend = gpu_backend if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=180))


def offload_json(folder: Path, adam: str) -> Path:
    """`netgpt/ds_configs/zero3_offload.json`, with torch's AdamW on the CPU unless `adam == "deepspeed"`
    (whose CPU Adam is JIT-compiled on first use: 75-90 s on a 2-core machine)."""
    source = REPO / "netgpt" / "ds_configs" / "zero3_offload.json"
    if adam == "deepspeed":
        return source
    config = json.loads(source.read_text(encoding="utf-8"))
    config["optimizer"]["params"]["torch_adam"] = True
    target = folder / "zero3_offload_torch_adam.json"
    target.write_text(json.dumps(config), encoding="utf-8")
    return target


def build(group: Group, args: argparse.Namespace, device: torch.device, folder: Path):
    """NetGPT with the group's LLM shape on an engine built by `build_engine`; (engine, config, tokenizer)."""
    from netgpt.config import StageConfig, load_config
    from netgpt.graph.types import feature_dims
    from netgpt.train.engine import build_engine
    from netgpt.train.stages import freeze_for_stage

    shape = SHAPES[group.shape]
    tiny = [f"model.tiny_llm.{key}={value}" for key, value in shape.items()]
    ds_config = (
        offload_json(folder, args.offload_adam) if group.offload else REPO / "netgpt/ds_configs/zero3.json"
    )
    config = load_config(
        None,
        [
            *tiny,
            f"model.tiny_llm.vocab_size={VOCAB[group.shape]}",
            f"model.hidden_size={GRAPH_HIDDEN[group.shape]}",
            f"model.max_prompt_tokens={max(args.prompt_lengths) + 16}",
            f"model.gradient_checkpointing={str(group.checkpointing).lower()}",
            f"train.use_gpu={str(device.type == 'cuda').lower()}",
            "train.num_workers=1",
            f"train.ds_config={ds_config}",
        ],
    )
    config.train.stages = [
        StageConfig(
            name="bench_finetune",
            losses={"answer_ce": 1.0, "prompt_regression": 1.0},
            lr=1e-5,
            micro_batch_size=1,
        )
    ]
    tokenizer = synthetic_tokenizer(VOCAB[group.shape])
    dims = feature_dims(
        text_dim=config.graph.text.dim, time_dim=config.graph.time_dim, content_dim=config.graph.content_dim
    )
    engine, _ = build_engine(config, dims, tokenizer, world_size=1)
    freeze_for_stage(engine.module, config.train.stages[0])
    return engine, config, tokenizer, dims


def release(engine) -> None:
    """Drop an engine and give its GPU memory back before the next one is built."""
    if engine is not None and hasattr(engine, "destroy"):
        with contextlib.suppress(Exception):
            engine.destroy()
    del engine
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text
    )


def peak_memory_gib(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30, "cuda_max_memory_allocated"
    from netgpt.train.monitor import memory_bytes

    return memory_bytes() / 2**30, "cpu_max_rss"


def measure(engine, config, tokenizer, dims, length: int, micro_batch: int, args, device) -> dict:
    """Warm-up steps, then timed steps of `train_step`; the figures of one setting."""
    from netgpt.train.monitor import FlopCounter, StepMeter
    from netgpt.train.step import train_step

    model = engine.module
    stage = config.train.stages[0]
    prompts = SyntheticPrompts(tokenizer, length, config.model.num_graph_tokens)
    batches = [make_batch(micro_batch, dims, seed=i) for i in range(args.warmup + args.steps)]
    counter = FlopCounter.of(model)  # what the trainer's TensorBoard MFU counts with
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fake_oom = int(os.environ.get(FAKE_OOM_ENV, "0"))
    for batch in batches[: args.warmup]:
        train_step(engine, [batch], stage, prompts, StepMeter(), counter)
        if fake_oom and micro_batch * length >= fake_oom:
            raise torch.cuda.OutOfMemoryError(f"{FAKE_OOM_ENV}={fake_oom}: a made-up out-of-memory (tests)")
    synchronize(device)
    timed = StepMeter()
    started = time.perf_counter()
    losses = []
    for batch in batches[args.warmup :]:
        out = train_step(engine, [batch], stage, prompts, timed, counter)
        losses.append(out["loss"])
    synchronize(device)
    step_s = (time.perf_counter() - started) / args.steps
    tokens = timed.tokens / args.steps
    flops = timed.flops / args.steps
    memory, memory_kind = peak_memory_gib(device)
    return {
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "samples_per_s": micro_batch / step_s,
        "flops_per_step": flops,
        "attention_share": timed.attention_flops / timed.flops,
        "tflops": flops / step_s / 1e12,
        "peak_mem_gib": memory,
        "memory": memory_kind,
        "loss": sum(losses) / len(losses),
        "llm_params": counter.llm_params,
        "encoder_params": counter.encoder_params,
        "attn_implementation": getattr(model.llm.config, "_attn_implementation", None),
        "checkpointing_active": bool(getattr(model.llm, "is_gradient_checkpointing", False)),
    }


def estimate_step_s(group: Group, tokens: int, length: int, peak: float, last: dict | None) -> float:
    """The next setting's step time: the last measured one of the group scaled by FLOPs, else 6N+attention
    FLOPs at 25 % of the measured peak, plus a CPU optimizer's pass when offloading."""
    shape = SHAPES[group.shape]
    hidden, layers = shape["hidden_size"], shape["num_layers"]
    kv_width = hidden // shape["num_heads"] * shape["num_kv_heads"]
    per_layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * shape["intermediate_size"]
    params = layers * per_layer + VOCAB[group.shape] * hidden
    flops = 6.0 * params * tokens + 12.0 * layers * hidden * length * tokens
    if last is not None:
        return last["step_s"] * max(1.0, flops / last["flops_per_step"])
    offload_s = params * 3e-9 if group.offload else 0.0  # torch AdamW over fp32 master weights on 16 cores
    return flops / (0.25 * peak) + offload_s + 0.2


def sweep(args, device: torch.device, peak: dict, budget: Budget, folder: Path) -> None:
    from netgpt.train.monitor import peak_flops

    table_peak = peak_flops()
    build_s = dict(BUILD_ESTIMATE_S)
    for group in plan(args):
        engine = None
        last: dict | None = None
        last_setting = (0, 0)
        for length in sorted(args.prompt_lengths):
            for micro_batch in micro_batches(args, length):
                setting = {
                    "bench": "gpu",
                    "what": "train_step",
                    **group.describe(),
                    "prompt_tokens": length,
                    "micro_batch": micro_batch,
                    "dtype": "bfloat16" if device.type == "cuda" else "float32",
                }
                if group.offload:
                    setting["offload_adam"] = args.offload_adam
                step_est = estimate_step_s(group, micro_batch * length, length, peak["flops"], last)
                estimate = (args.warmup + args.steps) * step_est + (
                    build_s[group.shape] if engine is None else 0
                )
                setting["estimate_s"] = round(estimate, 1)
                if not budget.fits(estimate):
                    emit(
                        {
                            **setting,
                            "skipped": f"estimated {estimate:.0f} s, {budget.left():.0f} s of budget left",
                        }
                    )
                    continue
                note(f"{setting} (estimate {estimate:.0f} s, {budget.left():.0f} s left)")
                record = dict(setting)
                try:
                    if engine is None:
                        before = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else None
                        started = time.perf_counter()
                        engine, config, tokenizer, dims = build(group, args, device, folder)
                        build_s[group.shape] = time.perf_counter() - started
                        record |= {"build_s": round(build_s[group.shape], 1), "mem_before_build_gib": before}
                    figures = measure(engine, config, tokenizer, dims, length, micro_batch, args, device)
                except Exception as error:  # noqa: BLE001 (one setting's failure must not lose the others)
                    oom = is_oom(error)
                    emit({**record, "oom": True} if oom else {**record, "error": repr(error)[:500]})
                    figures = None
                if figures is None:
                    # released outside `except`: the traceback holds the failed step's tensors until then
                    release(engine)
                    engine = None
                    if oom:
                        break  # larger micro-batches of this length would not fit either
                    continue
                last, last_setting = figures, (length, micro_batch)
                mfu = figures["tflops"] * 1e12 / peak["flops"]
                emit(
                    {
                        **record,
                        **{k: _round(v) for k, v in figures.items()},
                        "mfu": round(mfu, 4),
                        "mfu_table": round(figures["tflops"] * 1e12 / table_peak, 4) if table_peak else None,
                    }
                )
        if engine is not None and last is not None:
            measure_checkpoint_save(
                engine, config, tokenizer, dims, group, last, last_setting, device, folder, budget
            )
        release(engine)


def measure_checkpoint_save(
    engine, config, tokenizer, dims, group, last, setting, device, folder, budget
) -> None:
    """One line: a checkpoint of the group's engine written in place, then in the background beside steps of
    its last measured `setting` (prompt tokens, micro-batch), as the trainer writes them
    (`checkpoint_save.checkpoint_costs`: stalls, the steps beside the write, the write's seconds)."""
    from checkpoint_save import checkpoint_costs  # this folder

    from netgpt.train.monitor import StepMeter
    from netgpt.train.step import train_step

    params = last["llm_params"] + last["encoder_params"]
    record = {"bench": "gpu", "what": "checkpoint", **group.describe(), "params": params}
    estimate = 2 * CHECKPOINT_BYTES_PER_PARAM * params / CHECKPOINT_WRITE_BYTES_PER_S + 4 * last["step_s"] + 5
    record["estimate_s"] = round(estimate, 1)
    if not budget.fits(estimate):
        emit({**record, "skipped": f"estimated {estimate:.0f} s, {budget.left():.0f} s of budget left"})
        return
    length, micro_batch = setting
    stage = config.train.stages[0]
    prompts = SyntheticPrompts(tokenizer, length, config.model.num_graph_tokens)
    batch = make_batch(micro_batch, dims, seed=0)

    def step() -> float:
        started = time.perf_counter()
        train_step(engine, [batch], stage, prompts, StepMeter())
        synchronize(device)
        return time.perf_counter() - started

    note(f"{record} (estimate {estimate:.0f} s, {budget.left():.0f} s left)")
    try:
        figures = checkpoint_costs(engine, folder / "checkpoints", step, last["step_s"], device)
    except Exception as error:  # noqa: BLE001 (the next group must still run)
        emit({**record, "error": repr(error)[:500]})
        return
    emit({**record, "prompt_tokens": length, "micro_batch": micro_batch, **figures})


def _round(value):
    return round(value, 4) if isinstance(value, float) else value


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall budget of the whole run")
    parser.add_argument("--skip-demo", action="store_true", help="leave out the demo curriculum")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, prompts of 64, micro-batches 1-2")
    parser.add_argument("--shapes", type=lambda s: s.split(","), default=None, help="e.g. 0.5b,1.5b")
    parser.add_argument("--prompt-lengths", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--max-micro-batch", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=131072, help="tokens per micro-batch at most")
    parser.add_argument("--offload", choices=("both", "off", "only"), default=None)
    parser.add_argument("--offload-adam", choices=("torch", "deepspeed"), default="torch")
    parser.add_argument("--checkpointing", choices=("both", "true", "false"), default="both")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--matmul-n", type=int, default=None)
    parser.add_argument(
        "--gpu-backend",
        default="cpu:gloo,cuda:nccl",
        help="process group backend on a GPU (the trainer's); `gloo` if NCCL will not come up",
    )
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.shapes = args.shapes or (["tiny"] if tiny else ["0.5b", "1.5b"])
    args.prompt_lengths = args.prompt_lengths or ([64] if tiny else [1024, 4096])
    args.max_micro_batch = args.max_micro_batch or (2 if tiny else 64)
    args.offload = args.offload or ("off" if tiny else "both")
    args.matmul_n = args.matmul_n or (512 if tiny else 8192)
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {unknown}; expected among {sorted(SHAPES)}")
    return args


def numa_cores(gpu_index: int) -> dict:
    """What `train.bind_cores=true` binds the worker of CUDA device `gpu_index` to, or why nothing."""
    from netgpt.train.cores import gpu_cores

    allowed = sorted(os.sched_getaffinity(0))
    try:
        return {"gpu": gpu_index, "cores": gpu_cores(gpu_index), "allowed": allowed}
    except Exception as error:  # noqa: BLE001  (the error is the finding: it is what leaves a worker unbound)
        return {"gpu": gpu_index, "error": repr(error)[:500], "allowed": allowed}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    keep_stdout_for_results()
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        emit({"bench": "gpu", "what": "run", "skipped": "no CUDA device: run with --tiny on CPU"})
        return
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    note(f"device {name}, budget {args.budget_s:.0f} s")

    peak = matmul_peak(device, args.matmul_n)
    emit(
        {
            "bench": "gpu",
            "what": "matmul_peak",
            "device": name,
            "dtype": peak["dtype"],
            "n": peak["n"],
            "tflops": round(peak["flops"] / 1e12, 2),
            "torch": torch.__version__,
        }
    )

    if cuda:
        emit({"bench": "gpu", "what": "numa_cores", **numa_cores(0)})

    with tempfile.TemporaryDirectory(prefix="netgpt-gpu-bench-") as tmp:
        folder = Path(tmp)
        if args.skip_demo:
            pass
        elif not cuda:
            emit({"bench": "gpu", "what": "demo", "skipped": "no CUDA device"})
        elif not budget.fits(DEMO_ESTIMATE_S):
            emit({"bench": "gpu", "what": "demo", "skipped": f"estimated {DEMO_ESTIMATE_S:.0f} s"})
        else:
            try:
                import ray  # noqa: F401
            except ImportError:
                emit({"bench": "gpu", "what": "demo", "skipped": "ray is not installed"})
            else:
                note(f"demo on one GPU worker (estimate {DEMO_ESTIMATE_S:.0f} s)")
                try:
                    emit({"bench": "gpu", "what": "demo", **run_demo_once(folder / "demo")})
                except Exception as error:  # noqa: BLE001
                    emit({"bench": "gpu", "what": "demo", "error": repr(error)[:500]})

        from netgpt.train.engine import avoid_jit_builds

        avoid_jit_builds()
        init_process_group(device, args.gpu_backend)
        sweep(args, device, peak, budget, folder)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    emit({"bench": "gpu", "what": "done", "wall_s": round(args.budget_s - budget.left(), 1)})


if __name__ == "__main__":
    main()
