"""The rules a released XS-Video sample must keep, and the anomalies real data has that are only counted.

Rejected (a `DataError` naming the file, the sample id, the field and the rule; the import stops):
- a missing required key, in a sample or in one of its comments (what the model reads: `REQUIRED_*_KEYS`);
- with `strict_keys`, a key the release does not have (without it, such keys are counted and left out);
- a wrong type (a count that is not an integer, a duration that is not a number, `历史状态` not a list of
  integers, `评论` not an object of comment objects ...);
- a negative count or duration, a level outside 0-9, an unknown platform or sentiment;
- a malformed post time (`YYYY-MM-DD HH:MM:SS`) or crawl date (`YYYY-MM-DD`), a crawl date before the post
  time;
- a URL without a video id in its path;
- an earlier-state id (`历史状态`) that is the sample itself, does not exist, belongs to another video, or was
  not crawled before the sample; a duplicate sample id;
- truncated or invalid JSON (with the byte offset; see `netgpt.data.importer`).
New samples to rate (`netgpt predict`, `SampleParser(labels_optional=True)`) keep every rule, except that the
level `影响力等级` may be absent (stored as null); their earlier-state ids may name samples of the graph store
and are checked there (`netgpt.graph.extend`).

Counted per key and platform in the import summary, never an error (the released records show both):
- `missing_keys`: an optional key absent (`OPTIONAL_*_KEYS`: `sentiment` is absent from about 28 % of
  released records, `short_id` from some comments); stored as null;
- `unknown_keys`: a key the release does not have; left out of the tables.

Only counted and listed in the import summary (real crawls show them; none makes a sample unusable):
- `count_decrease`: a cumulative count lower than at the video's previous crawl (a deleted like or comment);
- `label_differs_between_states`: a video whose states carry different levels (each keeps its own);
- `video_fields_differ_between_states`: platform, topic, author or post time not the same in every state (the
  video is split by its earliest post time);
- `history_incomplete`: a state whose `历史状态` does not list every earlier state of its video;
- `comment_time_unparsed`: a comment time that is not `YYYY-MM-DD HH:MM:SS` (stored as null);
- `zero_<count>_<platform>`: a count that is 0 in at least half of a platform's samples, which likely means
  "not shown" there (Douyin views, Xigua shares and collects, Bilibili comment counts); kept as 0, counted so
  a reader sees how many. Scattered zeros elsewhere are ordinary values and are not listed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from netgpt.data.schema import COUNT_COLUMNS, NUM_LEVELS, PLATFORMS, SECONDS_PER_DAY, SENTIMENTS

COUNT_FIELDS = dict(
    zip(
        ("当前粉丝量", "当前点赞量", "当前播放量", "当前分享量", "当前收藏量", "当前评论量"),
        COUNT_COLUMNS,
        strict=True,
    )
)
"""Released count key -> samples column (fans, likes, views, shares, collects, comment count)."""

TEXT_FIELDS = {
    "url": "url",
    "描述": "description",
    "标题": "title",
    "话题": "topic",
    "发布用户ID": "author_id",
    "平台": "platform",
}
"""Released text key -> samples column, for the texts the model reads (empty strings are valid text)."""
LEVEL_KEY = "影响力等级"
"""The released level (0-9): required by `prepare`, optional for new samples (`labels_optional`)."""
REQUIRED_SAMPLE_KEYS = frozenset(
    [*TEXT_FIELDS, "视频时长（秒）", "发布时间", LEVEL_KEY, "当前时间", *COUNT_FIELDS, "评论", "历史状态"]
)
OPTIONAL_SAMPLE_KEYS = frozenset(["sentiment"])
"""Keys the model does not read: absent is counted (`missing_keys`), never an error; stored as null."""
SAMPLE_KEYS = REQUIRED_SAMPLE_KEYS | OPTIONAL_SAMPLE_KEYS
REQUIRED_COMMENT_KEYS = frozenset(["评论内容", "评论时间"])
OPTIONAL_COMMENT_KEYS = frozenset(["short_id", "评论用户ID", "IP地址"])
COMMENT_KEYS = REQUIRED_COMMENT_KEYS | OPTIONAL_COMMENT_KEYS
MAX_SAMPLE_ID = (1 << 63) - 1
"""Sample ids are int64 in the tables."""
YEARS = (2000, 2100)
"""Post times and crawl dates outside these years are typos or corrupt (short-video platforms are younger)."""
MAX_DURATION_S = 10 * SECONDS_PER_DAY
"""The longest video duration accepted: ten days (short videos last seconds to minutes)."""
EXAMPLES_KEPT = 5
"""Sample ids kept per anomaly kind, so a reader can look at a few."""

_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class DataError(ValueError):
    """A sample that breaks a rule: the message names the file, the sample, the field and the rule."""

    def __init__(self, file: str, rule: str, sample_id: str | int | None = None, field: str | None = None):
        place = [str(file)]
        if sample_id is not None:
            place.append(f"sample {sample_id}")
        if field is not None:
            place.append(f"field {field!r}")
        super().__init__(f"{': '.join(place)}: {rule}")
        self.file, self.sample_id, self.field, self.rule = str(file), sample_id, field, rule


class KeyCounts:
    """How many records (or comments) lack, or carry, each key, per platform: {key: {platform: count}}."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, keys: Iterable[str], platform: str) -> None:
        for key in keys:
            self.counts[key, platform] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (key, platform), count in sorted(self.counts.items()):
            table.setdefault(key, {})[platform] = count
        return table


class Anomalies:
    """Counts of each anomaly kind, with the first few sample ids of each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[int]] = {}

    def add(self, kind: str, sample_ids: list[int] | np.ndarray | int, count: int | None = None) -> None:
        ids = [int(sample_ids)] if isinstance(sample_ids, int | np.integer) else [int(i) for i in sample_ids]
        total = len(ids) if count is None else count
        if total == 0:
            return
        self.counts[kind] += total
        kept = self.examples.setdefault(kind, [])
        kept.extend(ids[: EXAMPLES_KEPT - len(kept)])


def video_id_from_url(url: str) -> str:
    """The video's identity: the URL's host and the last non-empty segment of its path.

    The host is kept because two platforms may use the same numeric id for different videos."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments or not parts.hostname:
        raise ValueError("expected a URL with a host and a path that ends in the video's id")
    return f"{parts.hostname}/{segments[-1]}"


def _epoch_seconds(text: str) -> int | None:
    if not _DATETIME.fullmatch(text) or not YEARS[0] <= int(text[:4]) <= YEARS[1]:
        return None
    try:
        return int((datetime.fromisoformat(text) - _EPOCH).total_seconds())
    except ValueError:
        return None


def _epoch_days(text: str) -> int | None:
    if not _DATE.fullmatch(text) or not YEARS[0] <= int(text[:4]) <= YEARS[1]:
        return None
    try:
        return date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


class SampleParser:
    """Checks one released sample at a time and turns it into a `samples` row and its `comments` rows.

    `strict_keys`: refuse keys the release does not have, instead of counting them in `unknown_keys`.
    `labels_optional`: the level `影响力等级` may be absent (new samples to rate, `netgpt predict`); an absent
    level is stored as None (null), never as a placeholder, and is not counted in `missing_keys`; a level
    that is present must still keep its rule."""

    def __init__(
        self, file: str, anomalies: Anomalies, strict_keys: bool = False, labels_optional: bool = False
    ) -> None:
        self.file = file
        self.anomalies = anomalies
        self.strict_keys = strict_keys
        self.labels_optional = labels_optional
        self._required = REQUIRED_SAMPLE_KEYS - {LEVEL_KEY} if labels_optional else REQUIRED_SAMPLE_KEYS
        self._optional = OPTIONAL_SAMPLE_KEYS | {LEVEL_KEY} if labels_optional else OPTIONAL_SAMPLE_KEYS
        self.missing_keys = KeyCounts()
        self.unknown_keys = KeyCounts()

    def error(self, rule: str, sample_id: str | int | None = None, field: str | None = None) -> DataError:
        return DataError(self.file, rule, sample_id, field)

    def parse(self, key: str, raw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The `samples` row (less `is_final_state` and `split`) and the `comments` rows of sample `key`."""
        if not key.isdigit() or not key.isascii():
            raise self.error("expected a sample id that is a non-negative integer", key)
        if len(key) > 19 or int(key) > MAX_SAMPLE_ID:
            raise self.error(f"expected a sample id of at most {MAX_SAMPLE_ID} (int64)", key[:40])
        sample_id = int(key)
        if not isinstance(raw, dict):
            raise self.error(f"expected an object of sample fields, got {type(raw).__name__}", key)
        missing, unknown = self._check_keys(raw, self._required, self._optional, key, "")
        missing = [name for name in missing if name != LEVEL_KEY]
        row: dict[str, Any] = {"sample_id": sample_id}
        for field, column in TEXT_FIELDS.items():
            row[column] = self._string(raw, field, key)
        if row["platform"] not in PLATFORMS:
            raise self.error(
                f"unknown platform {row['platform']!r}: expected one of {PLATFORMS}", key, "平台"
            )
        self.missing_keys.add(missing, row["platform"])
        self.unknown_keys.add(unknown, row["platform"])
        row["sentiment"] = self._string(raw, "sentiment", key) if "sentiment" in raw else None
        if row["sentiment"] is not None and row["sentiment"] not in SENTIMENTS:
            raise self.error(
                f"unknown sentiment {row['sentiment']!r}: expected one of {SENTIMENTS}", key, "sentiment"
            )
        try:
            row["video_id"] = video_id_from_url(row["url"])
        except ValueError as err:
            raise self.error(f"{err}, got {row['url']!r}", key, "url") from None
        duration = raw["视频时长（秒）"]
        if not _is_number(duration):
            raise self.error(f"expected a number of seconds, got {duration!r}", key, "视频时长（秒）")
        if not 0 <= duration <= MAX_DURATION_S:
            raise self.error(
                f"expected a duration of 0-{MAX_DURATION_S:,} s, got {duration!r}", key, "视频时长（秒）"
            )
        row["duration_s"] = float(duration)
        for field, column in COUNT_FIELDS.items():
            value = raw[field]
            if not _is_int(value):
                raise self.error(f"expected an integer count, got {value!r}", key, field)
            if value < 0:
                raise self.error(f"expected a count >= 0, got {value}", key, field)
            row[column] = value
        row["level"] = None if self.labels_optional and LEVEL_KEY not in raw else self._level(raw, key)
        post = _epoch_seconds(self._string(raw, "发布时间", key))
        if post is None:
            raise self.error(
                f"expected a time YYYY-MM-DD HH:MM:SS in {YEARS[0]}-{YEARS[1]}, got {raw['发布时间']!r}",
                key,
                "发布时间",
            )
        crawl = _epoch_days(self._string(raw, "当前时间", key))
        if crawl is None:
            raise self.error(
                f"expected a date YYYY-MM-DD in {YEARS[0]}-{YEARS[1]}, got {raw['当前时间']!r}",
                key,
                "当前时间",
            )
        if crawl < post // SECONDS_PER_DAY:
            raise self.error(
                f"crawl date {raw['当前时间']} is before the post time 发布时间 {raw['发布时间']}",
                key,
                "当前时间",
            )
        row["post_time"], row["crawl_date"] = post, crawl
        row["history_ids"] = self._history(raw["历史状态"], sample_id)
        return row, self._comments(raw["评论"], sample_id, row["platform"])

    def _level(self, raw: dict, key: str) -> int:
        level = raw[LEVEL_KEY]
        if not _is_int(level):
            raise self.error(f"expected an integer level, got {level!r}", key, LEVEL_KEY)
        if not 0 <= level < NUM_LEVELS:
            raise self.error(f"expected a level in 0-{NUM_LEVELS - 1}, got {level}", key, LEVEL_KEY)
        return level

    def _check_keys(
        self, raw: dict, required: frozenset[str], optional: frozenset[str], sample_id: str, prefix: str
    ) -> tuple[list[str], list[str]]:
        """Raise on a missing required key (or, strict, an unknown one); else the optional keys missing and
        the unknown keys present. `prefix` places the key in an error (`评论.3.`)."""
        missing_required = sorted(required - raw.keys())
        if missing_required:
            raise self.error(
                f"missing key (required keys: {sorted(required)})", sample_id, prefix + missing_required[0]
            )
        unknown = sorted(raw.keys() - required - optional)
        if unknown and self.strict_keys:
            raise self.error(
                f"unknown key (expected keys: {sorted(required | optional)}; without --strict it would be "
                "counted and left out)",
                sample_id,
                prefix + unknown[0],
            )
        return sorted(optional - raw.keys()), unknown

    def _string(self, raw: dict, field: str, sample_id: str, label: str | None = None) -> str:
        value = raw[field]
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {value!r}", sample_id, label or field)
        return value

    def _history(self, value: Any, sample_id: int) -> list[int]:
        if not isinstance(value, list) or not all(_is_int(item) for item in value):
            raise self.error(f"expected a list of integer sample ids, got {value!r}", sample_id, "历史状态")
        if sample_id in value:
            raise self.error(
                "an earlier-state id is the sample itself, not an earlier state", sample_id, "历史状态"
            )
        return value

    def _comments(self, value: Any, sample_id: int, platform: str) -> list[dict[str, Any]]:
        if not isinstance(value, dict):
            raise self.error(f"expected an object of comments, got {value!r}", sample_id, "评论")
        rows = []
        for index, comment in value.items():
            prefix = f"评论.{index}."
            if not isinstance(comment, dict):
                raise self.error(f"expected a comment object, got {comment!r}", sample_id, f"评论.{index}")
            missing, unknown = self._check_keys(
                comment, REQUIRED_COMMENT_KEYS, OPTIONAL_COMMENT_KEYS, sample_id, prefix
            )
            self.missing_keys.add((f"评论.{key}" for key in missing), platform)
            self.unknown_keys.add((f"评论.{key}" for key in unknown), platform)
            texts = {
                key: self._string(comment, key, sample_id, prefix + key) if key in comment else None
                for key in COMMENT_KEYS
            }
            time = _epoch_seconds(texts["评论时间"])
            if time is None:
                self.anomalies.add("comment_time_unparsed", sample_id)
            rows.append(
                {
                    "sample_id": sample_id,
                    "comment_id": texts["short_id"],
                    "commenter_id": texts["评论用户ID"],
                    "text": texts["评论内容"],
                    "time": time,
                    "region": texts["IP地址"],
                }
            )
        return rows


def check_states(
    file: str,
    sample_ids: np.ndarray,
    video_codes: np.ndarray,
    crawl_days: np.ndarray,
    history_rows: np.ndarray,
    history_ids: np.ndarray,
) -> None:
    """Cross-sample rules: unique sample ids; each earlier-state id exists, same video, crawled earlier.

    `history_rows[k]` is the row whose `历史状态` lists `history_ids[k]` (the flattened list column).
    """
    order = np.argsort(sample_ids, kind="stable")
    sorted_ids = sample_ids[order]
    repeated = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if repeated.size:
        raise DataError(file, "duplicate sample id (it appears more than once)", int(sorted_ids[repeated[0]]))
    if history_ids.size == 0:
        return
    position = np.minimum(np.searchsorted(sorted_ids, history_ids), len(sorted_ids) - 1)
    found = sorted_ids[position] == history_ids
    earlier_rows = order[position]
    for rule, broken in (
        ("earlier-state id {} does not exist", ~found),
        (
            "earlier-state id {} is another video's sample",
            found & (video_codes[earlier_rows] != video_codes[history_rows]),
        ),
        (
            "earlier-state id {} was not crawled before this sample",
            found & (crawl_days[earlier_rows] >= crawl_days[history_rows]),
        ),
    ):
        bad = np.flatnonzero(broken)
        if bad.size:
            first = bad[0]
            raise DataError(
                file, rule.format(int(history_ids[first])), int(sample_ids[history_rows[first]]), "历史状态"
            )
