"""Conversion of a run's DeepSpeed ZeRO checkpoint into the NetGPT folder of `save_pretrained`.

    convert("runs/demo/ray/netgpt", "netgpt-model")     # a run, a checkpoint or a best/<stage> folder
    export_run(run_dir)                                   # what the entry points call after training

One CPU process, no GPU, no process group: DeepSpeed's own `zero_to_fp32` rebuilds the weights lazily, one
tensor at a time, and they are written shard by shard, so memory stays near one output shard plus the
checkpoint's memory-mapped fp32 weights, never the model twice. `netgpt.train` never imports this package;
the entry points (`netgpt convert`, `netgpt train`, `netgpt demo`, `ray_jobs/train.py`) do.
"""

from netgpt.convert.errors import ConvertError, VerificationError
from netgpt.convert.export import convert, export_run

__all__ = ["ConvertError", "VerificationError", "convert", "export_run"]
