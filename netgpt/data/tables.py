"""Read the imported tables back, checking that they are what `netgpt.data.importer` writes: the one reader of
each table (every part of netgpt reads `samples.parquet` and `comments.parquet` through it).

    read_samples(tables_dir, ["sample_id", "split"])                       # columns
    read_samples(tables_dir, filters=pc.field("sample_id").isin(ids))       # rows too (read by row group)
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netgpt.data.schema import (
    COMMENTS_FILE,
    COMMENTS_SCHEMA,
    NEW_SAMPLES_SCHEMA,
    SAMPLES_FILE,
    SAMPLES_SCHEMA,
)


class TableSchemaError(ValueError):
    """A table whose columns or types are not the ones netgpt writes."""


def _same_type(stored: pa.DataType, expected: pa.DataType) -> bool:
    """Equal up to what parquet changes: timestamp units (seconds come back as ms), list item names."""
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(stored)
    if pa.types.is_list(expected):
        return pa.types.is_list(stored) and _same_type(stored.value_type, expected.value_type)
    return stored == expected


def _read(
    path: Path, schema: pa.Schema, columns: list[str] | None, filters: pc.Expression | None
) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table (run `netgpt prepare` first)")
    try:
        found = pq.read_schema(path)
    except (pa.ArrowException, OSError) as error:
        raise TableSchemaError(f"{path}: not a readable parquet table ({error})") from None
    for expected in schema:
        if expected.name not in found.names:
            raise TableSchemaError(
                f"{path}: column {expected.name!r} is missing (expected columns: {schema.names}); "
                "was it written by another tool or an older netgpt?"
            )
        actual = found.field(expected.name)
        if not _same_type(actual.type, expected.type):
            raise TableSchemaError(
                f"{path}: column {expected.name!r} has type {actual.type}, expected {expected.type}"
            )
    unknown = sorted(set(found.names) - set(schema.names))
    if unknown:
        raise TableSchemaError(f"{path}: unknown column {unknown[0]!r} (expected columns: {schema.names})")
    wanted = list(columns) if columns is not None else schema.names
    for name in wanted:
        if name not in schema.names:
            raise KeyError(f"{path}: no column {name!r} to read (columns: {schema.names})")
    try:
        table = pq.read_table(path, columns=wanted, filters=filters)
    except (pa.ArrowException, OSError) as error:
        raise TableSchemaError(f"{path}: damaged, cannot be read ({error})") from None
    try:
        return table.cast(pa.schema([schema.field(name) for name in wanted]))
    except (ValueError, pa.ArrowInvalid) as error:
        raise TableSchemaError(f"{path}: {error}") from None


def read_samples(
    tables_dir: str | os.PathLike[str],
    columns: list[str] | None = None,
    filters: pc.Expression | None = None,
    labels_optional: bool = False,
) -> pa.Table:
    """The `samples` table (all columns, or `columns`; the rows `filters` keeps), after checking its schema.

    `labels_optional`: a table of new samples to rate (`NEW_SAMPLES_SCHEMA`: the level may be null), as
    `netgpt predict` imports them."""
    schema = NEW_SAMPLES_SCHEMA if labels_optional else SAMPLES_SCHEMA
    return _read(Path(tables_dir) / SAMPLES_FILE, schema, columns, filters)


def read_comments(
    tables_dir: str | os.PathLike[str],
    columns: list[str] | None = None,
    filters: pc.Expression | None = None,
) -> pa.Table:
    """The `comments` table (all columns, or `columns`; the rows `filters` keeps), its schema checked."""
    return _read(Path(tables_dir) / COMMENTS_FILE, COMMENTS_SCHEMA, columns, filters)
