import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from netgpt.config import DataConfig
from netgpt.data.importer import import_json
from netgpt.data.schema import COMMENTS_SCHEMA, NEW_SAMPLES_SCHEMA, SAMPLES_FILE, SAMPLES_SCHEMA
from netgpt.data.tables import TableSchemaError, read_comments, read_samples


@pytest.fixture
def tables(example_path, tmp_path):
    import_json(example_path, tmp_path / "t", DataConfig(), progress=False)
    return tmp_path / "t"


def test_reads_with_the_declared_schema(tables):
    assert read_samples(tables).schema == SAMPLES_SCHEMA
    assert read_comments(tables).schema == COMMENTS_SCHEMA
    part = read_samples(tables, ["sample_id", "post_time", "split"])
    assert part.column_names == ["sample_id", "post_time", "split"]
    assert part.schema.field("post_time").type == pa.timestamp("s")


def test_a_table_written_by_something_else_is_named(tables):
    table = read_samples(tables)
    pq.write_table(table.drop_columns(["level"]), tables / SAMPLES_FILE)
    with pytest.raises(TableSchemaError, match=r"samples\.parquet: column 'level' is missing"):
        read_samples(tables)
    pq.write_table(
        table.set_column(18, "level", table.column("level").cast(pa.string())), tables / SAMPLES_FILE
    )
    with pytest.raises(TableSchemaError, match=r"column 'level' has type string, expected int8"):
        read_samples(tables)
    pq.write_table(table.append_column("extra", pa.array([1] * table.num_rows)), tables / SAMPLES_FILE)
    with pytest.raises(TableSchemaError, match="unknown column 'extra'"):
        read_samples(tables)


def test_a_file_that_is_not_parquet_is_named(tables):
    (tables / SAMPLES_FILE).write_bytes(b"not parquet")
    with pytest.raises(TableSchemaError, match=r"samples\.parquet: not a readable parquet table"):
        read_samples(tables)


def test_unknown_column_requested_and_missing_table(tables, tmp_path):
    with pytest.raises(KeyError, match="no column 'likez'"):
        read_samples(tables, ["likez"])
    with pytest.raises(FileNotFoundError, match="netgpt prepare"):
        read_comments(tmp_path / "nowhere")


def test_rows_are_filtered_on_read(tables):
    every = read_samples(tables, ["sample_id", "split"])
    train = read_samples(tables, ["sample_id", "split"], filters=pc.field("split") == "train")
    assert 0 < train.num_rows < every.num_rows
    assert set(train["split"].to_pylist()) == {"train"}
    wanted = every["sample_id"].to_pylist()[:2]
    comments = read_comments(tables, filters=pc.field("sample_id").isin(wanted))
    assert set(comments["sample_id"].to_pylist()) <= set(wanted)
    assert comments.schema == COMMENTS_SCHEMA


def test_a_null_level_is_read_only_as_new_samples(tables):
    table = read_samples(tables, labels_optional=True)
    levels = pa.array([None] * table.num_rows, pa.int8())
    pq.write_table(
        table.set_column(table.schema.get_field_index("level"), "level", levels), tables / SAMPLES_FILE
    )
    with pytest.raises(TableSchemaError, match=r"samples\.parquet: .*'level' with null values"):
        read_samples(tables)
    new = read_samples(tables, labels_optional=True)
    assert new.schema == NEW_SAMPLES_SCHEMA and new["level"].null_count == new.num_rows
