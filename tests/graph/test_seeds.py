"""The seeds' fields: declared once, and every one of them a column of the samples table."""

from typing import get_type_hints

import pyarrow as pa

from netgpt.data.schema import COUNT_COLUMNS, NEW_SAMPLES_SCHEMA, SAMPLES_SCHEMA
from netgpt.graph.seeds import SEED_FIELDS, TIME_LAYOUTS, SeedFields


def test_every_seed_field_is_a_samples_column_and_the_counts_are_all_there():
    for schema in (SAMPLES_SCHEMA, NEW_SAMPLES_SCHEMA):
        assert set(SEED_FIELDS) <= set(schema.names)
    assert set(COUNT_COLUMNS) <= set(SEED_FIELDS)
    assert set(TIME_LAYOUTS) <= set(SEED_FIELDS)


def test_the_declared_types_follow_the_samples_columns():
    declared = get_type_hints(SeedFields)
    for name in SEED_FIELDS:
        column = SAMPLES_SCHEMA.field(name).type
        if name in TIME_LAYOUTS:
            assert declared[name] is str  # written as text by the build
        elif pa.types.is_integer(column):
            assert declared[name] in (int, int | None)
        elif pa.types.is_floating(column):
            assert declared[name] is float
        else:
            assert declared[name] is str
