"""Hand-made tables in the data layer's schema, and a Ray cluster for the graph tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netgpt.config import GraphConfig, TextEncoderConfig
from netgpt.data.schema import COMMENTS_FILE, COMMENTS_SCHEMA, PLATFORMS, SAMPLES_FILE, SAMPLES_SCHEMA


def write_tables(folder: Path, videos: int = 60, topics: int = 4, authors: int = 14, seed: int = 0) -> Path:
    """A small XS-Video-shaped table pair: 2-4 states per video, days apart, shared topics and authors."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples, comments = [], []
    sample_id = 0
    base = dt.datetime(2024, 12, 1)
    for video in range(videos):
        post = base + dt.timedelta(days=int(rng.integers(0, 30)), hours=int(rng.integers(0, 24)))
        topic = f"话题{int(rng.integers(0, topics))}"
        author = f"author{int(rng.integers(0, authors))}"
        platform = PLATFORMS[int(rng.integers(0, len(PLATFORMS)))]
        states = int(rng.integers(2, 5))
        day = post.date() + dt.timedelta(days=int(rng.integers(0, 2)))
        history: list[int] = []
        likes = 0
        for state in range(states):
            likes += int(rng.integers(0, 500))
            final = state == states - 1
            split = "final" if final else ("train" if post.date() <= dt.date(2024, 12, 20) else "test")
            samples.append(
                {
                    "sample_id": sample_id,
                    "video_id": f"example.com/v{video}",  # host/last path segment, as prepare derives it
                    "url": f"https://example.com/v{video}",
                    "platform": platform,
                    "topic": topic,
                    "author_id": author,
                    "post_time": post,
                    "crawl_date": day,
                    "duration_s": float(rng.integers(5, 300)),
                    "fans": int(rng.integers(0, 10_000)),
                    "likes": likes,
                    "views": likes * 10,
                    "shares": likes // 7,
                    "collects": likes // 9,
                    "comment_count": likes // 20,
                    "title": f"标题 {video} #{topic}",
                    "description": f"description of video {video} state {state}",
                    "sentiment": "中性",
                    "level": int(rng.integers(0, 10)),
                    "history_ids": list(history),
                    "is_final_state": final,
                    "split": split,
                }
            )
            for c in range(int(rng.integers(0, 4))):
                comments.append(
                    {
                        "sample_id": sample_id,
                        "comment_id": f"{sample_id}-{c}",
                        "commenter_id": f"u{int(rng.integers(0, 50))}",
                        "text": f"评论 {c} on {video}",
                        "time": None if c == 2 else post + dt.timedelta(hours=int(rng.integers(1, 48))),
                        "region": "北京",
                    }
                )
            history.append(sample_id)
            sample_id += 1
            day = day + dt.timedelta(days=int(rng.integers(1, 6)))
    order = rng.permutation(len(comments))
    pq.write_table(pa.Table.from_pylist(samples, schema=SAMPLES_SCHEMA), folder / SAMPLES_FILE)
    pq.write_table(
        pa.Table.from_pylist([comments[i] for i in order], schema=COMMENTS_SCHEMA), folder / COMMENTS_FILE
    )
    return folder


def small_graph_config(**overrides) -> GraphConfig:
    values = dict(
        num_partitions=2,
        partitioner="metis",
        text=TextEncoderConfig(dim=16),
        time_dim=4,
        content_dim=3,
        fanouts=[-1, -1],
    )
    values.update(overrides)
    return GraphConfig(**values)


@pytest.fixture(scope="session")
def graph_config():
    """`graph_config(**overrides)`: the small GraphConfig these tests build stores with."""
    return small_graph_config


@pytest.fixture(scope="session")
def tables_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tables(tmp_path_factory.mktemp("tables"))
