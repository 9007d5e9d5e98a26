"""The released JSON's samples, one at a time, with what one sample may cost bounded while it is built.

    for sample_id, value in iter_samples(file, name):      # name: how errors name the file
        ...

ijson's own `kvitems` builds each value whole before anyone can look at it, and its path strings grow with the
nesting depth: 100,000 nested `[` (342 KB of input) took 23.5 GB. Here the parser's bare events
(`ijson.basic_parse`, no paths) are assembled by hand, so every bound below is checked as the value grows and
an input that breaks one costs at most the bound, never memory that follows its shape. A released sample is
three levels deep (sample → 评论 → comment), holds a few hundred comments and short texts; the bounds leave
wide room for real data and none for a file built to exhaust memory:
- `MAX_DEPTH` levels of nesting below the top-level object;
- `MAX_ITEMS` keys in an object or items in a list (comments of a sample, earlier states);
- `MAX_STRING_CHARS` characters in a string or a key (the parser holds one string at a time);
- integers within int64 (the tables' type), finite numbers.
Each broken bound is a `DataError` naming the file, the sample and the field path (`评论.3.评论内容`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import IO, Any

import ijson

from netgpt.data.validate import DataError

READ_BYTES = 1 << 16
"""Bytes handed to the JSON parser at a time."""
MAX_DEPTH = 8
MAX_ITEMS = 100_000
MAX_STRING_CHARS = 1 << 20
INT64 = (-(1 << 63), (1 << 63) - 1)


class _Value:
    """A container being built: the object (or list) and, for an object, the key whose value comes next."""

    __slots__ = ("container", "key")

    def __init__(self, container: dict | list) -> None:
        self.container: dict | list = container
        self.key: str | None = None

    def add(self, value: Any) -> None:
        if isinstance(self.container, dict):
            self.container[self.key] = value
        else:
            self.container.append(value)


def _path(stack: list[_Value]) -> str:
    parts = []
    for level in stack:
        if isinstance(level.container, dict):
            if level.key is not None:
                parts.append(level.key)
        else:
            parts.append(str(len(level.container)))
    return ".".join(parts)


def _check_scalar(value: Any, name: str, sample_id: str, stack: list[_Value]) -> None:
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        rule = f"a string of {len(value):,} characters: expected at most {MAX_STRING_CHARS:,}"
        raise DataError(name, rule, sample_id, _path(stack))
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        raise DataError(name, f"integer {value} out of the int64 range", sample_id, _path(stack))
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(name, f"number {value} is not finite", sample_id, _path(stack))


def _build(events: Iterator[tuple[str, Any]], name: str, sample_id: str) -> Any:
    """The value of one sample, from the event after its key to the end of that value, within the bounds."""
    stack: list[_Value] = []
    for event, value in events:
        if event in ("start_map", "start_array"):
            if len(stack) >= MAX_DEPTH:
                raise DataError(
                    name,
                    f"nested deeper than {MAX_DEPTH} levels (a sample is 3 deep)",
                    sample_id,
                    _path(stack),
                )
            stack.append(_Value({} if event == "start_map" else []))
            continue
        if event == "map_key":
            level = stack[-1]
            if len(level.container) >= MAX_ITEMS:
                raise DataError(name, f"more than {MAX_ITEMS:,} keys in an object", sample_id, _path(stack))
            level.key = value
            _check_scalar(value, name, sample_id, stack)
            continue
        if event in ("end_map", "end_array"):
            done = stack.pop().container
        else:
            _check_scalar(value, name, sample_id, stack)
            done = value
        if not stack:
            return done
        level = stack[-1]
        if isinstance(level.container, list) and len(level.container) >= MAX_ITEMS:
            raise DataError(name, f"more than {MAX_ITEMS:,} items in a list", sample_id, _path(stack))
        level.add(done)
    raise ijson.IncompleteJSONError("the file ends inside a sample")


def iter_samples(file: IO[bytes], name: str) -> Iterator[tuple[str, Any]]:
    """(sample id, sample value) of the top-level object, in file order; `name` names the file in errors."""
    events = ijson.basic_parse(file, use_float=True, buf_size=READ_BYTES)
    first = next(events, None)
    if first is None or first[0] != "start_map":
        return
    for event, value in events:
        if event == "end_map":
            for _ in events:  # the parser refuses anything after the object
                pass
            return
        if len(value) > MAX_STRING_CHARS:
            raise DataError(name, f"a sample id of {len(value):,} characters", value[:40] + "…")
        yield value, _build(events, name, value)
