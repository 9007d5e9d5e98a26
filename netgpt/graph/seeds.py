"""What a sampled batch carries about each of its seeds besides the graph: their prompt fields, declared once
(docs/graph.md#the-seeds-fields).

The build writes them per partition (`seeds.parquet`, one row per seed, these columns in this order); the
sampler hands them over as `batch.seed_fields`, a list of `SeedFields` in seed order; the prompt, training
and evaluation read them by these names.
"""

from __future__ import annotations

from typing import TypedDict


class SeedFields(TypedDict):
    """One seed's fields, as the samples table has them except for the two times, written as text."""

    sample_id: int
    platform: str
    """As released, in Chinese (`netgpt.data.schema.PLATFORMS`)."""
    topic: str
    title: str
    description: str
    post_time: str
    """`YYYY-MM-DD HH:MM:SS`."""
    crawl_date: str
    """`YYYY-MM-DD`."""
    duration_s: float
    fans: int
    likes: int
    views: int
    shares: int
    collects: int
    comment_count: int
    level: int | None
    """The label 0-9; None for a new sample `netgpt predict` rates without one."""
    split: str
    """`train`, `val`, `test`, or `new` (a sample to rate)."""


SEED_FIELDS: tuple[str, ...] = tuple(SeedFields.__annotations__)
"""The fields' names, in the column order of `seeds.parquet`."""

TIME_LAYOUTS = {"post_time": "%Y-%m-%d %H:%M:%S", "crawl_date": "%Y-%m-%d"}
"""The two times, written as text in these layouts (the prompt shows them as they are)."""
