"""`netgpt demo`: the embedded default, end to end on one machine."""

from __future__ import annotations

from pathlib import Path

from netgpt.config import NetGPTConfig


def run_demo(config: NetGPTConfig) -> None:
    """Generate a synthetic XS-Video-like data set and import it, printing the summary table."""
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic

    tables_dir = Path(config.data.tables_dir)
    raw_path = tables_dir.parent / "xs_video_synthetic.json"
    raw = write_synthetic(raw_path, videos=config.data.synth_videos, seed=config.data.synth_seed)
    prepare(raw, tables_dir, config.data)
