"""What a run needs, computed from its config before anything starts, and what a Ray cluster lacks of it.

A Ray Train run on a cluster too small for it does not fail: its workers and sampler actors wait for
resources that never come. `ResourcePlan.of(config)` computes the run's needs on paper (no weights loaded,
nothing allocated) and `plan.check(ray.cluster_resources())` names each shortfall, so `train()` can fail
at once with a message that says what is missing and why (`ensure_resources`).

What the plan counts:

* CPU: `train.num_workers` × `train.cpus_per_worker` + sampler actors × `graph.sampler_num_cpus`, where
  sampler actors = partitions × `graph.samplers_per_partition` (partitions from the store's `meta.json`
  when it exists, else `graph.num_partitions`). The streams' read tasks take no CPU of their own (they only
  wait on the sampler actors), so a cluster whose every CPU is reserved still streams.
* GPU: one per Train worker when `train.use_gpu`.
* Custom resources (placement): `train.worker_resources` per Train worker, `graph.sampler_resources` per
  sampler actor; a name no node was started with is a shortfall like any other.
* Per GPU (or per worker on CPU), bytes for P parameters of encoder + projector + LLM + heads at b bytes
  each (b = 2 under bf16, 4 in fp32), N = world size (`train.num_workers`):
  parameters P·b, gradients P·g (g = 4 where the DeepSpeed config accumulates them in fp32,
  `data_types.grad_accum_dtype`, as netgpt's configs do; else b), optimizer states 12·P (DeepSpeed's fp32
  master copy plus AdamW's two fp32 moments, also when training in fp32: DeepSpeed clones the master
  either way); ZeRO-1 divides the optimizer states by N, ZeRO-2 also the gradients, ZeRO-3 all three.
  `offload_optimizer` moves the optimizer states and gradient partitions to host memory, `offload_param`
  the parameter partitions.
  Under ZeRO-3, 2 × the largest gathered unit (the embedding matrix or one decoder layer) × b: the module
  computed and the one prefetched. Activations of the LLM stages, without activation checkpointing (the
  trainer does not enable it): layers × 34 × tokens × hidden × b/2 (Korthikanti et al.'s 34 bytes per
  token and hidden unit per layer at 16 bits, attention scores not stored as with SDPA), tokens =
  micro-batch × `model.max_prompt_tokens`; logits 2 × tokens × vocab × (b + 4) (the logits, their float32
  copy in the loss, as much again in the backward); 2 GiB of CUDA context, NCCL buffers and fragmentation.
  The graph encoder's activations (stage 1) are not estimated.
* Host memory: sampler actors, each its whole partition resident (`bytes` in `meta.json`: the arrays are
  memory-mapped, so this is the bound) + 0.5 GiB of process; Train workers 1 GiB of process each + the
  LLM's weights in flight while loading (one safetensors shard, ≤ 5 GB), or with `train.async_checkpoints`
  its share of a checkpoint (the host copy it keeps while the checkpoint is written; the larger of the two,
  which never overlap) + what offload puts on the host + on CPU, the per-worker bytes above.
* Object store: each rank's stream may fill `graph.stream_buffer_mb` ahead of its consumer.
* Disk under `train.storage_path`: a checkpoint is the optimizer states, 12·P, plus the parameters again
  at b bytes (DeepSpeed writes a stage's frozen parameters in its model states), plus 1 MiB a rank of
  metadata (the demo's checkpoints, 198k parameters in fp32 on 2 ranks, are 2.5-3.3 MB against 16·P =
  3.2 MB). Ray keeps `train.keep_checkpoints` and writes the next before it deletes the oldest; each
  stage keeps its best (when it validates), and a new best is written beside the old before it replaces
  it: under ZeRO-3 a best holds no AdamW moments (`netgpt/train/moments.py`), 4·P of master weights where
  a checkpoint holds 12·P; then `model/`, the export, 4·P in fp32. Not counted: the universal checkpoint
  a resume on another world size converts to, the same size again.

Estimates are upper bounds of the usual kind (prompts padded to the longest in a batch are often shorter
than `max_prompt_tokens`); CPU and GPU counts are what Ray reserves, plus the one CPU kept free.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netgpt.config import NetGPTConfig
from netgpt.train.ds_config import accumulates_grads_in_fp32, build_ds_config, use_bf16, zero_stage

GIB = 1024**3
CHECKPOINT_RANK_BYTES = 2**20
"""Per rank and checkpoint besides the tensors: DeepSpeed's metadata and scripts, the RNG state, the
manifest (about 0.1 MB a rank in the demo's checkpoints; 1 MiB allowed)."""
EXPORT_BYTES = 4
"""Per parameter of `model/`, the export after training (fp32, `export_run`'s default)."""
OPTIMIZER_BYTES = 12
"""Per parameter: DeepSpeed's fp32 master copy + AdamW's fp32 first and second moments."""
BEST_OPTIMIZER_BYTES = 4
"""Per parameter of a stage's best checkpoint under ZeRO-3: the fp32 master copy alone
(`netgpt/train/moments.py`)."""
ACTIVATION_BYTES_PER_TOKEN_HIDDEN_LAYER = 34
"""Korthikanti et al. (2022), a transformer layer at 16 bits without recomputation, attention scores not
stored (SDPA / flash attention): 34 bytes per token per hidden unit."""
GPU_RUNTIME_BYTES = 2 * GIB
"""CUDA context, NCCL buffers and allocator fragmentation per GPU."""
SAMPLER_PROCESS_BYTES = GIB // 2
"""A sampler actor's process (numpy, PyG, pyarrow loaded) besides its partition."""
WORKER_PROCESS_BYTES = GIB
"""A Train worker's process with torch, DeepSpeed, transformers and PyG loaded."""
LLM_SHARD_BYTES = 5 * 10**9
"""The most of an LLM's weights a rank holds on the host while loading: one safetensors shard (5 GB is
transformers' default largest shard), or the whole LLM when smaller."""
DECODER_FAMILIES = {"qwen2": (True, False), "llama": (None, None), "mistral": (None, None)}
"""Model types whose parameters the plan counts from the config: (q/k/v bias, o bias); None = the config's
`attention_bias`. Other types are built on the `meta` device, which allocates nothing."""


class InsufficientResources(RuntimeError):
    """The cluster lacks what the run needs (and cannot grow, or did not in time)."""


@dataclass(frozen=True)
class LLMShape:
    """The sizes of a decoder-only LLM that its parameter count and activations depend on."""

    model_type: str
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tied_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> LLMShape:
        """From a transformers config (Qwen2, Llama, Mistral and alike: the fields they share)."""
        text = hf_config.get_text_config()
        heads = int(text.num_attention_heads)
        qkv_bias, o_bias = DECODER_FAMILIES.get(text.model_type, (None, None))
        attention_bias = bool(getattr(text, "attention_bias", False))
        return cls(
            model_type=str(text.model_type),
            hidden_size=int(text.hidden_size),
            num_layers=int(text.num_hidden_layers),
            intermediate_size=int(text.intermediate_size),
            vocab_size=int(text.vocab_size),
            num_heads=heads,
            num_kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(text, "head_dim", None) or text.hidden_size // heads),
            tied_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
            qkv_bias=attention_bias if qkv_bias is None else qkv_bias,
            o_bias=attention_bias if o_bias is None else o_bias,
            mlp_bias=bool(getattr(text, "mlp_bias", False)),
        )

    def layer_params(self) -> int:
        """One decoder layer: attention (q, k, v, o), gated MLP (gate, up, down), two RMSNorms."""
        q_out, kv_out = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = self.hidden_size * (q_out + 2 * kv_out) + q_out * self.hidden_size
        attention += (q_out + 2 * kv_out if self.qkv_bias else 0) + (self.hidden_size if self.o_bias else 0)
        mlp = 3 * self.hidden_size * self.intermediate_size
        mlp += 2 * self.intermediate_size + self.hidden_size if self.mlp_bias else 0
        return attention + mlp + 2 * self.hidden_size

    def params(self) -> int:
        """Embedding + layers + final norm + LM head (none when tied to the embedding)."""
        embedding = self.vocab_size * self.hidden_size
        head = 0 if self.tied_embeddings else embedding
        return embedding + self.num_layers * self.layer_params() + self.hidden_size + head


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of each part of NetGPT, and the largest unit ZeRO-3 gathers at once."""

    encoder: int
    projector: int
    llm: int
    graph_head: int
    prompt_head: int
    largest_unit: int
    """The embedding matrix or one decoder layer, whichever is larger."""

    @property
    def total(self) -> int:
        return self.encoder + self.projector + self.llm + self.graph_head + self.prompt_head


def encoder_params(kind: str, feature_dims: Mapping[str, int], hidden: int, layers: int, heads: int) -> int:
    """Input projections (a Linear per node type) plus the message-passing layers.

    RGCN layer: a bias-free H×H weight per relation (PyG SAGEConv without root weight) + an H×H self loop
    with bias. HGT layer (PyG HGTConv), per node type a k/q/v Linear H→3H and an output Linear H→H with
    biases and a skip scalar, per relation two (heads × (H/heads)²) relation matrices and `heads` priors."""
    from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES

    node_types, relations = len(NODE_TYPE_NAMES), len(EDGE_TYPES)
    inputs = sum(int(feature_dims[nt]) * hidden + hidden for nt in NODE_TYPE_NAMES)
    if kind == "rgcn":
        layer = relations * hidden * hidden + hidden * hidden + hidden
    else:
        per_type = (3 * hidden * hidden + 3 * hidden) + (hidden * hidden + hidden) + 1
        layer = node_types * per_type + 2 * relations * hidden * (hidden // heads) + relations * heads
    return inputs + layers * layer


def projector_params(graph_hidden: int, llm_hidden: int, layers: int) -> int:
    """The MLP projector: Linear(graph hidden → LLM hidden), then `layers - 1` Linear(LLM → LLM)."""
    return graph_hidden * llm_hidden + llm_hidden + (layers - 1) * (llm_hidden * llm_hidden + llm_hidden)


def llm_shape(config: NetGPTConfig) -> LLMShape | None:
    """The LLM's shape: `model.tiny_llm`, or the HF config of `model.llm_path` (local files, no weights).

    None when the LLM is not one of `DECODER_FAMILIES` (its count then comes from a `meta`-device build).
    A tiny LLM's vocabulary is `tiny_llm.vocab_size`, the most the trained tokenizer can hold."""
    model = config.model
    if not model.llm_path:
        tiny = model.tiny_llm
        return LLMShape(
            model_type="qwen2",
            hidden_size=tiny.hidden_size,
            num_layers=tiny.num_layers,
            intermediate_size=tiny.intermediate_size,
            vocab_size=tiny.vocab_size,
            num_heads=tiny.num_heads,
            num_kv_heads=tiny.num_heads,
            head_dim=tiny.hidden_size // tiny.num_heads,
            tied_embeddings=True,
            qkv_bias=True,
            o_bias=False,
            mlp_bias=False,
        )
    hf_config = _hf_config(config)
    if hf_config.get_text_config().model_type not in DECODER_FAMILIES:
        return None
    return LLMShape.from_hf_config(hf_config)


def _hf_config(config: NetGPTConfig) -> Any:
    from netgpt.model.pretrained import llm_hf_config

    return llm_hf_config(config.model)


def _meta_llm(config: NetGPTConfig) -> tuple[int, int, int, int, int]:
    """(params, largest unit, hidden, layers, vocab) of an LLM built on the `meta` device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    hf_config = _hf_config(config)
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(hf_config)
    params = sum(p.numel() for p in llm.parameters())
    embedding = llm.get_input_embeddings().weight.numel()
    blocks = [m for m in llm.modules() if isinstance(m, torch.nn.ModuleList)]
    layer = max((sum(p.numel() for p in b[0].parameters()) for b in blocks if len(b)), default=0)
    text = hf_config.get_text_config()
    return params, max(embedding, layer), int(text.hidden_size), int(text.num_hidden_layers), embedding


def feature_dims_of(config: NetGPTConfig, meta: Mapping[str, Any] | None) -> dict[str, int]:
    """The store's recorded input widths, else those the config would build (text width from the encoder's
    config, 512 for `use`, or `graph.text.dim` for `hashed` and when the transformer's folder is not here)."""
    from netgpt.graph.types import feature_dims

    if meta is not None:
        return {k: int(v) for k, v in meta["feature_dims"].items()}
    graph = config.graph
    width = graph.text.dim
    if graph.text.kind == "use" or (graph.text.kind == "transformer" and Path(graph.text.path).is_dir()):
        from netgpt.graph.features import text_dim

        width = text_dim(graph.text)
    return feature_dims(width, graph.time_dim, graph.content_dim)


def read_store_meta(config: NetGPTConfig) -> dict[str, Any] | None:
    """The store's `meta.json` when the store exists (None otherwise: sizes then come from the config)."""
    from netgpt.graph.store import META_FILE, read_meta

    if not (Path(config.graph.store_dir) / META_FILE).is_file():
        return None
    return read_meta(config.graph.store_dir)


@dataclass(frozen=True)
class Shortfall:
    """One resource the cluster has less of than the run needs."""

    resource: str
    needed: float
    available: float
    why: str
    """What the need is made of, e.g. `4 Train workers × 8 CPU + 8 sampler actors × 0.5 CPU`."""

    def message(self) -> str:
        return f"needs {_amount(self.resource, self.needed)}, the cluster has " + (
            f"{_amount(self.resource, self.available)}: {self.why}"
        )


def _amount(resource: str, value: float) -> str:
    if resource in ("memory", "object_store_memory"):
        label = "memory" if resource == "memory" else "object store memory"
        return f"{value / GIB:.1f} GiB of {label}"
    return f"{value:g} {resource}"


@dataclass(frozen=True)
class ResourcePlan:
    """A run's needs; `device_bytes(n)` is the per-GPU (per-worker on CPU) memory with world size n."""

    num_workers: int
    cpus_per_worker: int
    use_gpu: bool
    bf16: bool
    num_samplers: int
    sampler_num_cpus: float
    partition_bytes: list[int] | None
    """Bytes of each partition (from `meta.json`), None when there is no store yet."""
    samplers_per_partition: int
    zero_stage: int
    grad_accum_fp32: bool
    """DeepSpeed accumulates the gradients in fp32 (`data_types.grad_accum_dtype`), also under bf16."""
    offload_optimizer: bool
    offload_param: bool
    params: ParamCounts
    llm_hidden: int
    llm_layers: int
    llm_vocab: int
    tokens: int
    """Micro-batch × `model.max_prompt_tokens`, the most of the LLM stages (0 when no stage runs the LLM)."""
    stream_buffer_bytes: int
    keep_checkpoints: int = 2
    """`train.keep_checkpoints`: the checkpoints Ray keeps."""
    best_stages: int = 0
    """Stages that keep a best checkpoint: all of them when they validate (`train.val_every_epoch`)."""
    async_checkpoints: bool = False
    """`train.async_checkpoints`: each rank keeps a host copy of its shard while a checkpoint is written."""
    optimizer_on_nvme: bool = False
    """The optimizer states swapped to NVMe: DeepSpeed then keeps them out of memory, and a best keeps
    its AdamW moments (`netgpt/train/moments.py`)."""
    run_dir: str | None = None
    """`train.storage_path/train.run_name`, where the checkpoints go."""
    worker_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per Train worker (`train.worker_resources`)."""
    sampler_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per sampler actor (`graph.sampler_resources`)."""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, config: NetGPTConfig, meta: Mapping[str, Any] | None = None) -> ResourcePlan:
        """The plan of `config`; `meta` is the store's `meta.json` (read from `graph.store_dir` if None)."""
        meta = meta if meta is not None else read_store_meta(config)
        train, graph, model = config.train, config.graph, config.model
        notes = []
        shape = llm_shape(config)
        if shape is not None:
            llm, hidden, layers, vocab = shape.params(), shape.hidden_size, shape.num_layers, shape.vocab_size
            largest = max(shape.vocab_size * shape.hidden_size, shape.layer_params())
        else:
            llm, largest, hidden, layers, vocab = _meta_llm(config)
            vocab //= hidden
            notes.append("LLM parameters counted on the meta device (not a Qwen2/Llama/Mistral config)")
        if model.llm_path:
            notes.append(
                "not counted: 3 embedding rows for the graph tokens if the LLM's vocabulary lacks room"
            )
        dims = feature_dims_of(config, meta)
        params = ParamCounts(
            encoder=encoder_params(model.encoder, dims, model.hidden_size, model.num_layers, model.hgt_heads),
            projector=projector_params(model.hidden_size, hidden, model.projector_layers),
            llm=llm,
            graph_head=model.hidden_size + 1,
            prompt_head=hidden + 1,
            largest_unit=largest,
        )
        ds = build_ds_config(train, train.num_workers, hidden)
        zero = ds.get("zero_optimization", {})
        llm_stages = [s for s in train.stages if s.uses_llm]
        tokens = max((s.micro_batch_size * model.max_prompt_tokens for s in llm_stages), default=0)
        if meta is not None:
            from netgpt.graph.rows import cache_capacity_bytes

            # Each sampler also caches up to graph.remote_cache_rows rows owned by other partitions.
            cache = cache_capacity_bytes(graph.remote_cache_rows, meta["feature_dims"])
            cache = cache if len(meta["partitions"]) > 1 else 0
            partition_bytes = [int(p["bytes"]) + cache for p in meta["partitions"]]
            partitions = len(partition_bytes)
        else:
            partition_bytes, partitions = None, graph.num_partitions
            notes.append(
                f"no graph store at {graph.store_dir}: sampler memory unknown, partitions from config"
            )
        return cls(
            num_workers=train.num_workers,
            cpus_per_worker=train.cpus_per_worker,
            use_gpu=train.use_gpu,
            bf16=use_bf16(train),
            num_samplers=partitions * graph.samplers_per_partition,
            sampler_num_cpus=graph.sampler_num_cpus,
            partition_bytes=partition_bytes,
            samplers_per_partition=graph.samplers_per_partition,
            zero_stage=zero_stage(ds),
            grad_accum_fp32=accumulates_grads_in_fp32(ds),
            offload_optimizer=zero.get("offload_optimizer", {}).get("device", "none") in ("cpu", "nvme"),
            offload_param=zero.get("offload_param", {}).get("device", "none") in ("cpu", "nvme"),
            params=params,
            llm_hidden=hidden,
            llm_layers=layers,
            llm_vocab=vocab,
            tokens=tokens,
            stream_buffer_bytes=int(graph.stream_buffer_mb * 1e6),
            keep_checkpoints=train.keep_checkpoints,
            async_checkpoints=train.async_checkpoints,
            best_stages=len(train.stages) if train.val_every_epoch else 0,
            optimizer_on_nvme=zero.get("offload_optimizer", {}).get("device") == "nvme",
            run_dir=str(Path(train.storage_path) / train.run_name),
            worker_resources=dict(train.worker_resources),
            sampler_resources=dict(graph.sampler_resources),
            notes=notes,
        )

    # --- Ray's logical resources --------------------------------------------------------------------------
    @property
    def cpus(self) -> float:
        trains = self.num_workers * self.cpus_per_worker
        return trains + self.num_samplers * self.sampler_num_cpus

    @property
    def gpus(self) -> int:
        return self.num_workers if self.use_gpu else 0

    def custom_resources(self) -> dict[str, tuple[float, str]]:
        """Each custom (placement) resource: (amount needed, what it is made of)."""
        needs: dict[str, tuple[float, str]] = {}
        for name in sorted({*self.worker_resources, *self.sampler_resources}):
            parts, total = [], 0.0
            for count, who, per in (
                (self.num_workers, "Train workers", self.worker_resources.get(name, 0.0)),
                (self.num_samplers, "sampler actors", self.sampler_resources.get(name, 0.0)),
            ):
                if per:
                    parts.append(f"{count} {who} × {per:g} {name}")
                    total += count * per
            needs[name] = (total, " + ".join(parts))
        return needs

    # --- memory ---------------------------------------------------------------------------------------------
    @property
    def param_bytes(self) -> int:
        """b: bytes of one parameter as trained."""
        return 2 if self.bf16 else 4

    @property
    def grad_bytes(self) -> int:
        """g: bytes of one gradient as DeepSpeed accumulates it."""
        return 4 if self.grad_accum_fp32 else self.param_bytes

    def device_bytes(self, world_size: int | None = None) -> dict[str, int]:
        """Per GPU (per worker on CPU) with `world_size` ranks (default: `train.num_workers`), by item."""
        n = world_size or self.num_workers
        p, b, g = self.params.total, self.param_bytes, self.grad_bytes
        params = 0 if self.offload_param else (p * b // n if self.zero_stage >= 3 else p * b)
        grads = p * g // n if self.zero_stage >= 2 else p * g
        optimizer = OPTIMIZER_BYTES * p // n if self.zero_stage >= 1 else OPTIMIZER_BYTES * p
        if self.offload_optimizer:
            grads = optimizer = 0
        items = {
            "parameters": params,
            "gradients": grads,
            "optimizer states": optimizer,
            "ZeRO-3 gathered units": 2 * self.params.largest_unit * b if self.zero_stage >= 3 else 0,
            "activations": self.llm_layers
            * ACTIVATION_BYTES_PER_TOKEN_HIDDEN_LAYER
            * self.tokens
            * self.llm_hidden
            * b
            // 2,
            "logits": 2 * self.tokens * self.llm_vocab * (b + 4),
            "CUDA runtime": GPU_RUNTIME_BYTES if self.use_gpu else 0,
        }
        return items

    def model_state_bytes(self, world_size: int | None = None) -> int:
        """Parameters + gradients + optimizer states per rank: the part that sharding divides."""
        items = self.device_bytes(world_size)
        return items["parameters"] + items["gradients"] + items["optimizer states"]

    def offloaded_bytes_per_rank(self) -> int:
        """Host bytes per rank that CPU offload moves off the GPU."""
        p, b, n = self.params.total, self.param_bytes, self.num_workers
        moved = (self.grad_bytes + OPTIMIZER_BYTES) * p // n if self.offload_optimizer else 0
        return moved + (p * b // n if self.offload_param else 0)

    def gpus_needed(self, gpu_bytes: int, states_only: bool = False) -> int | None:
        """The fewest GPUs of `gpu_bytes` each that hold the run (or only its model states), with the world
        size = that many GPUs; None when no world size does (what ZeRO does not divide is too large)."""
        for n in range(1, 4097):
            need = self.model_state_bytes(n) if states_only else sum(self.device_bytes(n).values())
            if need <= gpu_bytes:
                return n
        return None

    @property
    def sampler_memory(self) -> int | None:
        """Each sampler actor's whole partition resident + its remote-row cache at capacity + its process,
        summed (None without a store)."""
        if self.partition_bytes is None:
            return None
        per_partition = sum(self.partition_bytes) * self.samplers_per_partition
        return per_partition + self.num_samplers * SAMPLER_PROCESS_BYTES

    @property
    def worker_host_memory(self) -> int:
        """Host memory of all Train workers: process, the LLM shard being loaded or the checkpoint copy being
        written, offloaded states, and on CPU the model itself."""
        loading = min(self.params.llm * self.param_bytes, LLM_SHARD_BYTES)
        writing = self.checkpoint_bytes // self.num_workers if self.async_checkpoints else 0
        per_worker = WORKER_PROCESS_BYTES + max(loading, writing) + self.offloaded_bytes_per_rank()
        if not self.use_gpu:
            per_worker += sum(self.device_bytes().values())
        return self.num_workers * per_worker

    @property
    def memory(self) -> int:
        return self.worker_host_memory + (self.sampler_memory or 0)

    @property
    def object_store_memory(self) -> int:
        return self.num_workers * self.stream_buffer_bytes

    # --- disk -----------------------------------------------------------------------------------------------
    @property
    def checkpoint_bytes(self) -> int:
        """One checkpoint, every rank's files: optimizer states plus the parameters (an upper bound), and
        each rank's metadata."""
        tensors = (OPTIMIZER_BYTES + self.param_bytes) * self.params.total
        return tensors + self.num_workers * CHECKPOINT_RANK_BYTES

    @property
    def best_checkpoint_bytes(self) -> int:
        """One stage's best checkpoint, every rank's files: the master weights, the parameters (an upper
        bound), and each rank's metadata."""
        tensors = (self.best_optimizer_bytes + self.param_bytes) * self.params.total
        return tensors + self.num_workers * CHECKPOINT_RANK_BYTES

    @property
    def best_optimizer_bytes(self) -> int:
        """Per parameter of a best checkpoint's optimizer files: under ZeRO-3 no AdamW moments, unless they
        are swapped to NVMe."""
        return (
            BEST_OPTIMIZER_BYTES if self.zero_stage == 3 and not self.optimizer_on_nvme else OPTIMIZER_BYTES
        )

    @property
    def checkpoints_at_most(self) -> int:
        """Checkpoints on disk at once: Ray's kept ones and the next."""
        return self.keep_checkpoints + 1

    @property
    def bests_at_most(self) -> int:
        """Best checkpoints on disk at once: each validating stage's and a new one beside the old."""
        return self.best_stages + (1 if self.best_stages else 0)

    @property
    def disk_bytes(self) -> int:
        """The most the run holds under `train.storage_path` at once: its checkpoints, its stages' best
        ones and `model/`."""
        return (
            self.checkpoints_at_most * self.checkpoint_bytes
            + self.bests_at_most * self.best_checkpoint_bytes
            + EXPORT_BYTES * self.params.total
        )

    def disk_note(self) -> str | None:
        """A warning when the run folder's file system has less free space than the run may still write
        (`disk_bytes` less what the folder holds already: a resumed run replaces its own checkpoints)."""
        if self.run_dir is None:
            return None
        run_dir = Path(self.run_dir)
        existing = next((p for p in (run_dir, *run_dir.parents) if p.exists()), None)
        if existing is None:
            return None
        held = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()) if run_dir.is_dir() else 0
        free = shutil.disk_usage(existing).free
        if free + held >= self.disk_bytes:
            return None
        return (
            f"{existing} has {_gib(free)} free, less than the {_gib(self.disk_bytes - held)} more this run "
            "may write (the disk row): free space, move train.storage_path, or lower train.keep_checkpoints"
        )

    # --- the check ------------------------------------------------------------------------------------------
    def check(self, cluster_resources: Mapping[str, float]) -> list[Shortfall]:
        """What `cluster_resources` (`ray.cluster_resources()`: CPU, GPU, custom resources, memory, object
        store) lacks."""
        workers = f"{self.num_workers} Train workers"
        samplers = f"{self.num_samplers} sampler actors"
        sampler_memory = (
            "sampler memory unknown (no store)"
            if self.sampler_memory is None
            else f"{samplers} {self.sampler_memory / GIB:.1f} GiB (partitions resident + process)"
        )
        wanted = [
            (
                "CPU",
                self.cpus,
                f"{workers} × {self.cpus_per_worker} CPU + {samplers} × {self.sampler_num_cpus:g} CPU",
            ),
            ("GPU", self.gpus, f"{workers} × 1 GPU"),
            *((name, need, why) for name, (need, why) in self.custom_resources().items()),
            (
                "memory",
                self.memory,
                f"{workers} × {self.worker_host_memory / self.num_workers / GIB:.1f} GiB + {sampler_memory}",
            ),
            (
                "object_store_memory",
                self.object_store_memory,
                f"{self.num_workers} ranks × graph.stream_buffer_mb {self.stream_buffer_bytes / 1e6:g} MB",
            ),
        ]
        return [
            Shortfall(name, need, float(cluster_resources.get(name, 0.0)), why)
            for name, need, why in wanted
            if need > 0 and float(cluster_resources.get(name, 0.0)) < need
        ]

    # --- the table ------------------------------------------------------------------------------------------
    def rows(self, gpu_bytes: int = 80 * GIB) -> list[tuple[str, str, str]]:
        """(item, amount, how it is computed), for `netgpt plan` and the docs."""
        b, n = self.param_bytes, self.num_workers
        p = self.params
        where = "per GPU" if self.use_gpu else "per worker (host)"
        rows = [
            (
                "Train workers",
                f"{n}",
                f"{self.cpus_per_worker} CPU" + (" + 1 GPU each" if self.use_gpu else ""),
            ),
            ("sampler actors", f"{self.num_samplers}", f"{self.sampler_num_cpus:g} CPU each"),
            (
                "CPU",
                f"{self.cpus:g}",
                f"{n} × {self.cpus_per_worker} + {self.num_samplers} × {self.sampler_num_cpus:g}",
            ),
            ("GPU", f"{self.gpus}", "1 per Train worker" if self.use_gpu else "train.use_gpu is false"),
            *((name, f"{need:g}", why) for name, (need, why) in self.custom_resources().items()),
            (
                "parameters",
                _count(p.total),
                f"LLM {_count(p.llm)}, encoder {_count(p.encoder)}, projector "
                f"{_count(p.projector)}, heads {_count(p.graph_head + p.prompt_head)}",
            ),
            ("ZeRO", f"stage {self.zero_stage}", _zero_text(self)),
            (
                "precision",
                "bf16" if self.bf16 else "fp32",
                f"b = {b} bytes per parameter, g = {self.grad_bytes} per gradient"
                + (" (accumulated in fp32)" if self.grad_bytes != b else ""),
            ),
            (
                "LLM tokens",
                f"{self.tokens}",
                "micro-batch × model.max_prompt_tokens, the most of the LLM stages",
            ),
        ]
        formulas = {
            "parameters": f"P·{b}"
            + (f" / {n}" if self.zero_stage >= 3 else "")
            + (" (offloaded to host)" if self.offload_param else ""),
            "gradients": f"P·{self.grad_bytes}"
            + (f" / {n}" if self.zero_stage >= 2 else "")
            + (" (offloaded to host)" if self.offload_optimizer else ""),
            "optimizer states": "P·12 (fp32 master + AdamW m, v)"
            + (f" / {n}" if self.zero_stage >= 1 else "")
            + (" (offloaded to host)" if self.offload_optimizer else ""),
            "ZeRO-3 gathered units": f"2 × {_count(p.largest_unit)} (largest unit) × {b}"
            if self.zero_stage >= 3
            else "none: ZeRO-3 only",
            "activations": f"{self.llm_layers} layers × 34 × {self.tokens} tokens × {self.llm_hidden} "
            f"× {b}/2, no activation checkpointing",
            "logits": f"2 × {self.tokens} tokens × {self.llm_vocab} vocab × ({b} + 4)",
            "CUDA runtime": "context, NCCL, fragmentation",
        }
        items = self.device_bytes()
        for name, value in items.items():
            rows.append((f"{name} {where}", _gib(value), formulas[name]))
        rows.append((f"total {where}", _gib(sum(items.values())), f"world size {n}"))
        if self.use_gpu:
            gib = gpu_bytes / GIB
            states = self.gpus_needed(gpu_bytes, states_only=True)
            whole = self.gpus_needed(gpu_bytes)
            rows.append(
                (
                    f"GPUs of {gib:g} GiB",
                    f"{whole if whole else 'none fit'}",
                    f"fewest holding the total (model states alone: {states if states else 'none fit'})",
                )
            )
        metadata = f"{n} ranks × {CHECKPOINT_RANK_BYTES // 2**20} MiB"
        rows += [
            (
                "host memory",
                _gib(self.memory),
                f"Train workers {_gib(self.worker_host_memory)} + samplers "
                + ("unknown (no store)" if self.sampler_memory is None else _gib(self.sampler_memory)),
            ),
            ("object store", _gib(self.object_store_memory), f"{n} × graph.stream_buffer_mb"),
            (
                "disk",
                _gib(self.disk_bytes),
                f"{self.checkpoints_at_most} checkpoints at once ({self.keep_checkpoints} kept + the next)"
                + f" × (P·({OPTIMIZER_BYTES} + {b}) + {metadata})"
                + (
                    f" + {self.bests_at_most} best ({self.best_stages} stages' + a new one)"
                    f" × (P·({self.best_optimizer_bytes} + {b}) + {metadata})"
                    if self.bests_at_most
                    else ""
                )
                + f" + model/ P·{EXPORT_BYTES}, under {self.run_dir}",
            ),
        ]
        return rows


def _zero_text(plan: ResourcePlan) -> str:
    offload = [
        name for name, on in (("optimizer", plan.offload_optimizer), ("parameters", plan.offload_param)) if on
    ]
    sharded = {0: "nothing", 1: "optimizer states", 2: "gradients + optimizer states", 3: "all model states"}
    text = f"shards {sharded.get(plan.zero_stage, 'all model states')} over {plan.num_workers} ranks"
    return text + (f"; offloads {' and '.join(offload)} to host" if offload else "")


def _count(value: int) -> str:
    return (
        f"{value / 1e9:.2f} B" if value >= 1e9 else f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value:,}"
    )


def _gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def shortfall_message(shortfalls: list[Shortfall]) -> str:
    """One sentence naming every shortfall."""
    return "the run " + "; ".join(s.message() for s in shortfalls)


def ensure_resources(
    config: NetGPTConfig,
    cluster_resources: Callable[[], Mapping[str, float]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
    poll_s: float = 10.0,
) -> ResourcePlan:
    """Fail at once when the connected cluster lacks what `config` needs; when it can grow
    (`train.cluster_can_grow`: an autoscaler is on, which only the user knows for sure), say what is
    awaited and fail after `train.resource_wait_s` seconds."""
    if cluster_resources is None:
        import ray

        cluster_resources = ray.cluster_resources
    plan = ResourcePlan.of(config)
    shortfalls = plan.check(cluster_resources())
    if not shortfalls:
        return plan
    if not config.train.cluster_can_grow:
        raise InsufficientResources(
            shortfall_message(shortfalls) + " (set train.cluster_can_grow=true if an autoscaler adds nodes)"
        )
    deadline = clock() + config.train.resource_wait_s
    while shortfalls:
        if clock() >= deadline:
            raise InsufficientResources(
                shortfall_message(shortfalls)
                + f" after waiting train.resource_wait_s={config.train.resource_wait_s} s for it to grow"
            )
        log(f"netgpt: waiting for the cluster to grow: {shortfall_message(shortfalls)}")
        sleep(poll_s)
        shortfalls = plan.check(cluster_resources())
    return plan
