"""What an import found (`summary.json`): counts, per platform, levels, splits, anomalies; and its table."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from netgpt.data.schema import NUM_LEVELS, SPLITS, SUMMARY_FILE


@dataclass
class ImportSummary:
    """The figures of one import; written as `summary.json` next to the tables."""

    input: str
    """The imported JSON file."""
    input_bytes: int
    samples: int
    videos: int
    comments: int
    topics: int
    authors: int
    first_post_date: str
    last_post_date: str
    platforms: dict[str, dict[str, int]]
    """Per platform: {"samples": n, "videos": m}."""
    video_levels: dict[str, int]
    """Histogram of the level of each video's final state, "0".."9"."""
    sample_levels: dict[str, int]
    """Histogram of the level over all samples."""
    splits: dict[str, int]
    """Samples per split (train, val, test, final)."""
    split_date: str
    val_days: int
    missing_keys: dict[str, dict[str, int]] = field(default_factory=dict)
    """Optional keys absent, per platform: {key: {platform: records}}; a comment key (`评论.<key>`)
    counts comments."""
    unknown_keys: dict[str, dict[str, int]] = field(default_factory=dict)
    """Keys the release does not have, left out of the tables, per platform: {key: {platform: records}}."""
    anomalies: dict[str, int] = field(default_factory=dict)
    """Counted, not rejected (see `netgpt.data.validate`): kind -> how many."""
    anomaly_examples: dict[str, list[int]] = field(default_factory=dict)
    """Kind -> the first few sample ids showing it."""
    seconds: float = 0.0
    """Wall time of the import."""

    def write(self, folder: str | os.PathLike[str]) -> Path:
        path = Path(folder) / SUMMARY_FILE
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> ImportSummary:
        return cls(**json.loads((Path(folder) / SUMMARY_FILE).read_text(encoding="utf-8")))

    def print_table(self, console: Console | None = None) -> None:
        """The summary as rich tables: totals, per platform, levels, splits, anomalies."""
        console = console or Console()
        totals = Table(title=f"XS-Video import: {self.input}", show_header=False)
        for name, value in (
            ("samples", self.samples),
            ("videos", self.videos),
            ("comments", self.comments),
            ("topics", self.topics),
            ("authors", self.authors),
            ("posted", f"{self.first_post_date} .. {self.last_post_date}"),
            ("seconds", f"{self.seconds:.1f}"),
        ):
            totals.add_row(name, f"{value:,}" if isinstance(value, int) else value)
        console.print(totals)

        platforms = Table("platform", "samples", "videos", title="per platform")
        for name, counts in self.platforms.items():
            platforms.add_row(name, f"{counts['samples']:,}", f"{counts['videos']:,}")
        console.print(platforms)

        levels = Table("level", "videos (final state)", "share", "samples", title="levels")
        for level in map(str, range(NUM_LEVELS)):
            videos = self.video_levels.get(level, 0)
            share = f"{videos / self.videos:.1%}" if self.videos else "-"
            levels.add_row(level, f"{videos:,}", share, f"{self.sample_levels.get(level, 0):,}")
        console.print(levels)

        splits = Table(
            "split", "samples", title=f"splits (train <= {self.split_date}, val = last {self.val_days} days)"
        )
        for name in SPLITS:
            splits.add_row(name, f"{self.splits.get(name, 0):,}")
        console.print(splits)

        names = list(self.platforms)
        keys = Table("key", "", *names, title="keys absent (optional) or unknown (left out), per platform")
        for kind, table in (("absent", self.missing_keys), ("unknown", self.unknown_keys)):
            for key, counts in table.items():
                keys.add_row(key, kind, *(f"{counts.get(name, 0):,}" for name in names))
        if self.missing_keys or self.unknown_keys:
            console.print(keys)

        anomalies = Table("anomaly (counted, not rejected)", "count", "first sample ids", title="anomalies")
        for name, count in sorted(self.anomalies.items()):
            examples = ", ".join(map(str, self.anomaly_examples.get(name, [])))
            anomalies.add_row(name, f"{count:,}", examples)
        if not self.anomalies:
            anomalies.add_row("none", "0", "")
        console.print(anomalies)
