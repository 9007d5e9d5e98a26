"""The structure `meta.json` must have, checked on every open of a store: a malformed file is a `StoreError`
naming the field and what was expected, never a KeyError or IndexError deep inside a sampler.

Written by hand (a few lines over a declarative layout) because the project has no schema library among
its dependencies, and the messages must name the store's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose keys are free and whose every value has the layout `value`."""

    value: Any


@dataclass(frozen=True)
class ListOf:
    """A JSON array whose every item has the layout `item`."""

    item: Any


COUNT = "count"
"""A non-negative integer."""
NUMBER = "number"
TEXT = "text"
OBJECT = "object"
"""Any JSON object (its contents are not read by the sampler or the trainer)."""

FILE = {"bytes": COUNT, "sha256": TEXT}
ARRAY_FILE = {**FILE, "shape": ListOf(COUNT), "dtype": TEXT}

PARTITION = {
    "folder": TEXT,
    "num_seeds": COUNT,
    "num_inner": COUNT,
    "num_video": COUNT,
    "num_comments": COUNT,
    "num_owned": COUNT,
    "num_owned_comments": COUNT,
    "bytes": COUNT,
    "files": MapOf(FILE),
    "seeds_per_split": MapOf(COUNT),
}

META = {
    "format_version": COUNT,
    "node_types": ListOf(TEXT),
    "edge_types": ListOf(ListOf(TEXT)),
    "num_hops": COUNT,
    "feature_dims": MapOf(COUNT),
    "counts": {"nodes": MapOf(COUNT), "edges": MapOf(COUNT)},
    "topic_names": ListOf(TEXT),
    "platform_names": ListOf(TEXT),
    "text_encoder": OBJECT,
    "files": MapOf(FILE),
    "partitions": ListOf(PARTITION),
    "build": {"seconds": NUMBER, "content_vectors": OBJECT, "videos": COUNT},
}
"""The fields every reader of a store relies on (other fields may be present)."""


class MetaStructureError(ValueError):
    """`field`: the dotted path of the bad field; the message says what was expected and found."""

    def __init__(self, field: str, expected: str, found: Any) -> None:
        shown = repr(found)
        shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
        super().__init__(f"field {field or '(top level)'}: expected {expected}, found {shown}")
        self.field = field


def check_layout(value: Any, layout: Any, field: str = "") -> None:
    """Raise `MetaStructureError` at the first field of `value` that does not have `layout`."""
    if layout == COUNT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MetaStructureError(field, "a non-negative integer", value)
    elif layout == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MetaStructureError(field, "a number", value)
    elif layout == TEXT:
        if not isinstance(value, str):
            raise MetaStructureError(field, "a string", value)
    elif layout == OBJECT:
        if not isinstance(value, dict):
            raise MetaStructureError(field, "an object", value)
    elif isinstance(layout, ListOf):
        if not isinstance(value, list):
            raise MetaStructureError(field, "an array", value)
        for index, item in enumerate(value):
            check_layout(item, layout.item, f"{field}[{index}]")
    elif isinstance(layout, MapOf):
        if not isinstance(value, dict):
            raise MetaStructureError(field, "an object", value)
        for key, item in value.items():
            check_layout(item, layout.value, f"{field}[{key!r}]")
    else:
        if not isinstance(value, dict):
            raise MetaStructureError(field, "an object", value)
        for key, item_layout in layout.items():
            inner = f"{field}.{key}" if field else key
            if key not in value:
                raise MetaStructureError(inner, "the field to be present", "nothing")
            check_layout(value[key], item_layout, inner)


def check_meta(meta: Any) -> None:
    """`meta.json`'s structure: the fields of `META`, and shape and dtype for every `.npy` file."""
    check_layout(meta, META)
    for name in meta["node_types"]:
        if name not in meta["feature_dims"]:
            raise MetaStructureError(f"feature_dims[{name!r}]", "a width for every node type", "nothing")
    named = [("files", name) for name in meta["files"]]
    named += [
        (f"partitions[{i}].files", name)
        for i, part in enumerate(meta["partitions"])
        for name in part["files"]
    ]
    for field, name in named:
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise MetaStructureError(f"{field}[{name!r}]", "a file name inside the store's folder", name)
    for index, partition in enumerate(meta["partitions"]):
        for name, spec in partition["files"].items():
            if name.endswith(".npy"):
                check_layout(spec, ARRAY_FILE, f"partitions[{index}].files[{name!r}]")
