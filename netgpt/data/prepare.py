"""`netgpt prepare`: import the released (or synthetic) XS-Video JSON, split it, and show what it holds."""

from __future__ import annotations

import os

from netgpt.config import DataConfig, NetGPTConfig
from netgpt.data.importer import import_json
from netgpt.data.summary import ImportSummary


def prepare(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    data_cfg: DataConfig,
    progress: bool = True,
    config: NetGPTConfig | None = None,
) -> ImportSummary:
    """Import `input_path` into the tables folder `out_dir` (atomically), then print the summary table.

    `progress=False` hides both the progress bar and the table (for tests and library use). With `config`,
    the resolved config is saved as `config.yaml` next to the tables; its `data` section must be `data_cfg`.
    """
    if config is not None and config.data != data_cfg:
        raise ValueError("prepare: `config.data` and `data_cfg` differ; pass the config's own data section")
    summary = import_json(input_path, out_dir, data_cfg, progress=progress, config=config)
    if progress:
        summary.print_table()
    return summary
