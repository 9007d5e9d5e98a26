"""Read the imported tables back, checking that they are what `netgpt.data.importer` writes."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from netgpt.data.schema import COMMENTS_FILE, COMMENTS_SCHEMA, SAMPLES_FILE, SAMPLES_SCHEMA


class TableSchemaError(ValueError):
    """A table whose columns or types are not the ones netgpt writes."""


def _same_type(stored: pa.DataType, expected: pa.DataType) -> bool:
    """Equal up to what parquet changes: timestamp units (seconds come back as ms), list item names."""
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(stored)
    if pa.types.is_list(expected):
        return pa.types.is_list(stored) and _same_type(stored.value_type, expected.value_type)
    return stored == expected


def _read(path: Path, schema: pa.Schema, columns: list[str] | None) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table (run `netgpt prepare` first)")
    found = pq.read_schema(path)
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
    table = pq.read_table(path, columns=wanted)
    return table.cast(pa.schema([schema.field(name) for name in wanted]))


def read_samples(tables_dir: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """The `samples` table (all columns, or `columns`), after checking its schema."""
    return _read(Path(tables_dir) / SAMPLES_FILE, SAMPLES_SCHEMA, columns)


def read_comments(tables_dir: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """The `comments` table (all columns, or `columns`), after checking its schema."""
    return _read(Path(tables_dir) / COMMENTS_FILE, COMMENTS_SCHEMA, columns)
