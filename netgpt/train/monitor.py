"""Rank 0's TensorBoard log: loss terms, learning rate, grad norm, throughput, data wait, memory, MFU,
validation metrics, a confusion-matrix image and a few rendered predictions."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from netgpt.metrics import Metrics
from netgpt.train.engine import param_count

# Dense bf16 peak of the GPUs we expect (FLOP/s); MFU is logged only when the device is known.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def train_flops(
    llm_params: int,
    tokens: int,
    encoder_params: int,
    nodes: int,
    attention_width: int = 0,
    token_pairs: int = 0,
) -> float:
    """Forward + backward model FLOPs of a step: 6 per parameter per token (LLM) or per sampled node
    (encoder), plus the attention term when its shape is given.

    The attention term is that of PaLM's MFU (Chowdhery et al. 2022, appendix B): 12 × layers × query
    heads × head dim per attended pair of tokens (QKᵀ and the weighted sum of V, forward and backward), the
    causal mask not discounted. `attention_width` = layers × query heads × head dim
    (`llm_attention_width`), `token_pairs` = Σ over prompts of their length² (padding left out). At 4,096
    tokens on Qwen2-0.5B it adds about a third to the 6N term; at 512 it is a few per cent. Training and
    the GPU bench count through `FlopCounter`, which passes both."""
    attention = attention_flops(attention_width, token_pairs)
    return 6.0 * llm_params * tokens + 6.0 * encoder_params * nodes + attention


def attention_flops(attention_width: int, token_pairs: int) -> float:
    """The attention term of `train_flops` alone."""
    return 12.0 * attention_width * token_pairs


def llm_attention_width(llm_config) -> int:
    """Layers × query heads × head dim of an HF causal LM's config (`train_flops`' `attention_width`)."""
    text = llm_config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return int(text.num_hidden_layers * text.num_attention_heads * head_dim)


@dataclass(frozen=True)
class FlopCounter:
    """The model's sizes that `train_flops` needs, and the count of one micro-batch from what it feeds the
    model: `train_step` counts every micro-batch with it, so TensorBoard's MFU (`StepMeter.rates`) and
    `tools/bench/gpu.py` report the same FLOPs. The default counts tokens and no FLOPs (tests)."""

    llm_params: int = 0
    encoder_params: int = 0
    attention_width: int = 0
    """`llm_attention_width` of the LLM: 0 leaves attention out."""

    @classmethod
    def of(cls, model: torch.nn.Module) -> FlopCounter:
        """The counter of a NetGPT model (its `llm` and `encoder`), also one held in ZeRO-3 shards."""
        return cls(
            llm_params=param_count(model.llm),
            encoder_params=param_count(model.encoder),
            attention_width=llm_attention_width(model.llm.config),
        )

    def count(self, meter: StepMeter, attention_mask: torch.Tensor | None, nodes: int) -> None:
        """Add one micro-batch to `meter`: its prompts' tokens (`attention_mask`, None when the stage runs no
        LLM; padding left out), its FLOPs and their attention part. Each prompt attends over its own length,
        so the token pairs are the sum of squared lengths, not tokens × the padded width."""
        lengths = attention_mask.sum(dim=1).long() if attention_mask is not None else torch.zeros(0)
        tokens, pairs = int(lengths.sum()), int((lengths * lengths).sum())
        meter.tokens += tokens
        meter.flops += train_flops(
            self.llm_params, tokens, self.encoder_params, nodes, self.attention_width, pairs
        )
        meter.attention_flops += attention_flops(self.attention_width, pairs)


def memory_bytes() -> float:
    """Peak memory of this process: the GPU's allocator when on GPU, else the process's max RSS."""
    if torch.cuda.is_available():
        return float(torch.cuda.max_memory_allocated())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


@dataclass
class StepMeter:
    """Accumulates optimizer steps' work and time; `rates()` turns it into per-second figures.

    Time is that of the steps only (waiting for data included, validation and checkpoints not), so that
    samples/s and the data-wait share describe the training loop itself."""

    steps: int = 0
    samples: int = 0
    tokens: int = 0
    flops: float = 0.0
    attention_flops: float = 0.0
    """The part of `flops` that is attention (`FlopCounter.count`)."""
    wait_s: float = 0.0
    busy_s: float = 0.0

    def absorb(self, other: StepMeter) -> None:
        for name in ("steps", "samples", "tokens", "flops", "attention_flops", "wait_s", "busy_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def rates(self, world_size: int) -> dict[str, float]:
        elapsed = max(self.busy_s, 1e-9)
        out = {
            "perf/step_s": self.busy_s / max(self.steps, 1),
            "perf/samples_per_s": self.samples * world_size / elapsed,
            "perf/tokens_per_s": self.tokens * world_size / elapsed,
            "perf/data_wait_share": self.wait_s / elapsed,
            "perf/memory_gb": memory_bytes() / 2**30,
        }
        peak = peak_flops()
        if peak:
            out["perf/mfu"] = self.flops / elapsed / peak
        return out


def confusion_image(confusion: np.ndarray, cell: int = 12) -> np.ndarray:
    """The confusion matrix as a grey-scale image (rows: truth, columns: prediction), each row normalised.

    Drawn with numpy because the project has no plotting dependency; TensorBoard shows it as an image."""
    totals = confusion.sum(axis=1, keepdims=True).astype(float)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    return np.kron(1.0 - share, np.ones((cell, cell))).astype(np.float32)


class TensorBoardLog:
    """A `SummaryWriter` on rank 0 and a no-op elsewhere, so call sites need no rank checks."""

    def __init__(self, log_dir: Path | None):
        self.log_dir = log_dir
        self.writer = SummaryWriter(str(log_dir)) if log_dir is not None else None

    def resume_at(self, step: int) -> None:
        """Start a new event file that tells TensorBoard to drop what earlier files logged from `step` on: the
        steps between the checkpoint resumed from and a crash are logged again by the resumed run, once."""
        if self.writer is None:
            return
        self.writer.close()
        self.writer = SummaryWriter(str(self.log_dir), purge_step=step)

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            if value is not None and np.isfinite(value):
                self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def validation(self, stage: str, results: dict[str, Metrics], examples: list[dict], step: int) -> None:
        if self.writer is None:
            return
        for source, metrics in results.items():
            self.scalars(metrics.scalars(), step, prefix=f"val/{stage}/{source}/")
            self.writer.add_image(
                f"val/{stage}/{source}/confusion", confusion_image(metrics.confusion), step, dataformats="HW"
            )
        if examples:
            keys = list(examples[0])
            rows = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            rows += ["| " + " | ".join(str(example[k]) for k in keys) + " |" for example in examples]
            self.writer.add_text(f"val/{stage}/predictions", "\n".join(rows), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
