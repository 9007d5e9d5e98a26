"""The pyarrow schema of every table netgpt writes, declared once.

`samples` has one row per sample (one crawled state of a video); `comments` one row per comment seen at a
sample's crawl. Later floors (graph) read these tables and rely on exactly these columns. A nullable column
holds a key the released records may lack (null: absent; an empty string is a value).
"""

from __future__ import annotations

import pyarrow as pa

PLATFORMS = ("抖音", "快手", "西瓜", "头条", "哔哩哔哩")
"""The five platforms, as written in the released data (Douyin, Kuaishou, Xigua, Toutiao, Bilibili)."""

SENTIMENTS = ("非敏感", "敏感", "中性")
"""Non-sensitive, sensitive, neutral."""

COUNT_COLUMNS = ("fans", "likes", "views", "shares", "collects", "comment_count")
"""Cumulative counts at crawl time, in the order of the released fields 当前粉丝量 ... 当前评论量."""

SPLITS = ("train", "val", "test", "final")
"""`final` marks each video's last state: in no split (it reveals the label) but kept in the graph."""

NUM_LEVELS = 10
"""The influence level scale, declared once: levels 0..9 (labels, heads, answers and metrics all use it)."""
MAX_LEVEL = NUM_LEVELS - 1
"""The highest level, 9."""

SECONDS_PER_DAY = 86_400
"""Between the tables' timestamps (`post_time`, seconds) and dates (`crawl_date`, days since 1970-01-01)."""

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("platform", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("author_id", pa.string(), nullable=False),
        pa.field("post_time", pa.timestamp("s"), nullable=False),
        pa.field("crawl_date", pa.date32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        *(pa.field(name, pa.int64(), nullable=False) for name in COUNT_COLUMNS),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
        pa.field("sentiment", pa.string(), nullable=True),
        pa.field("level", pa.int8(), nullable=False),
        pa.field("history_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("is_final_state", pa.bool_(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)

NEW_SAMPLES_SCHEMA = SAMPLES_SCHEMA.set(
    SAMPLES_SCHEMA.get_field_index("level"), pa.field("level", pa.int8(), nullable=True)
)
"""New samples to rate (`netgpt predict`): the `samples` columns, the level null where the input has none."""

COMMENTS_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("comment_id", pa.string(), nullable=True),
        pa.field("commenter_id", pa.string(), nullable=True),
        pa.field("text", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("s"), nullable=True),
        pa.field("region", pa.string(), nullable=True),
    ]
)

SAMPLES_FILE = "samples.parquet"
COMMENTS_FILE = "comments.parquet"
SUMMARY_FILE = "summary.json"
