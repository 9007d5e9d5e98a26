"""The propagation graph's node types, relations and feature specs (docs/graph.md), declared once as data.

Everything that builds, stores, samples or encodes the graph walks these tuples; the model reads only this
module of the graph package (plus the feature dimensions a store records in its `meta.json`).
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO = "video"


@dataclass(frozen=True)
class NodeType:
    """A node type and how its feature is made.

    `feature` is one of: `content` (per-video content vector), `text` (text embedding), `text+time` (text
    embedding then timestamp encoding), `time` (timestamp encoding), `scalar` (log1p of one count).
    `column` is the samples-table column the feature comes from (for `scalar`, `time` and `text`).
    `per_sample` is False for the shared node types (one node per topic, one per platform).
    `per_video` marks values that belong to the video, not to one crawl of it (its content, title,
    description, post time and duration repeat in each of its 2-5 states): the store keeps one feature row per
    distinct (video, value) and an index per node, instead of one row per state.
    """

    name: str
    feature: str
    column: str | None = None
    per_sample: bool = True
    per_video: bool = False


@dataclass(frozen=True)
class Relation:
    """A directed relation `src --name--> dst`.

    `group_key` names the samples-table column whose equal values define a group relation (same topic,
    same author): such relations are stored as time-ordered groups, never as edge lists, because
    materialising them would take ~1.7 billion edges at full scale (docs/graph.md#groups).
    """

    src: str
    name: str
    dst: str
    group_key: str | None = None

    @property
    def edge_type(self) -> tuple[str, str, str]:
        return (self.src, self.name, self.dst)

    @property
    def is_group(self) -> bool:
        return self.group_key is not None


NODE_TYPES: tuple[NodeType, ...] = (
    NodeType(VIDEO, "content", per_video=True),
    NodeType("description", "text", "description", per_video=True),
    NodeType("title", "text", "title", per_video=True),
    NodeType("topic", "text", "topic", per_sample=False),
    NodeType("platform", "text", "platform", per_sample=False),
    NodeType("comment", "text+time"),
    NodeType("time", "time", "post_time", per_video=True),
    NodeType("ctime", "time", "crawl_date"),
    NodeType("video_time", "scalar", "duration_s", per_video=True),
    NodeType("fans", "scalar", "fans"),
    NodeType("likes", "scalar", "likes"),
    NodeType("plays", "scalar", "views"),
    NodeType("shares", "scalar", "shares"),
    NodeType("collections", "scalar", "collects"),
    NodeType("comments", "scalar", "comment_count"),
)

RELATIONS: tuple[Relation, ...] = (
    Relation("description", "is_description_of", VIDEO),
    Relation("title", "is_title_of", VIDEO),
    Relation("topic", "is_topic_of", VIDEO),
    Relation("video_time", "is_duration_time_of", VIDEO),
    Relation("platform", "is_platform_of", VIDEO),
    Relation("comment", "is_comment_of", VIDEO),
    Relation("time", "is_post_time_of", VIDEO),
    Relation("ctime", "is_current_time_of", VIDEO),
    Relation("fans", "is_fans_of", VIDEO),
    Relation("likes", "is_likes_of", VIDEO),
    Relation("plays", "is_views_of", VIDEO),
    Relation("shares", "is_shares_of", VIDEO),
    Relation("collections", "is_collections_of", VIDEO),
    Relation("comments", "is_comments_of", VIDEO),
    Relation(VIDEO, "is_history_of", VIDEO),
    Relation(VIDEO, "has_same_topic_as", VIDEO, group_key="topic"),
    Relation(VIDEO, "has_same_author_as", VIDEO, group_key="author_id"),
)

NODE_TYPE_NAMES: tuple[str, ...] = tuple(n.name for n in NODE_TYPES)
EDGE_TYPES: tuple[tuple[str, str, str], ...] = tuple(r.edge_type for r in RELATIONS)


def feature_dims(text_dim: int, time_dim: int, content_dim: int) -> dict[str, int]:
    """Input feature width of every node type, given the encoders' output sizes."""
    width = {
        "content": content_dim,
        "text": text_dim,
        "text+time": text_dim + time_dim,
        "time": time_dim,
        "scalar": 1,
    }
    return {n.name: width[n.feature] for n in NODE_TYPES}
