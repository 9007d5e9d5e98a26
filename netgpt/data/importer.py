"""Stream the released XS-Video JSON (a file, or inside a zip archive) into the `samples` and `comments`
parquet tables.

Two passes; no text is held beyond one row group, so memory does not follow the JSON's size (pass 2 holds
about 100 bytes of numeric columns per sample; seen: peak RSS 204 MB at 1/20 scale, 220 MB at 1/10, 374 MB at
full scale, 380k samples from 522 MB of JSON in 31 s):
1. `netgpt.data.jsonstream` yields one sample at a time, its size bounded while it is built; each is validated
   (`netgpt.data.validate`) and buffered into a row group
   of `ROWS_PER_GROUP` samples, written as soon as it is full (samples to a staging file, comments to their
   table). Nothing holds more than one row group of text.
2. The staging table's small columns (ids, dates, levels, counts, earlier-state ids, dictionary-encoded
   strings) are read back to check the cross-sample rules, count anomalies, mark each video's final state and
   assign splits (`netgpt.data.split`); then the staging file is copied row group by row group into
   `samples.parquet` with those two columns filled in.

Everything is written into a temporary folder beside the output and renamed into place at the end: a failed
import leaves nothing half-written and never touches an existing output.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

import ijson
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from netgpt.atomic import atomic_directory
from netgpt.config import CONFIG_FILE, DataConfig, NetGPTConfig, save_config
from netgpt.data.jsonstream import READ_BYTES, iter_samples
from netgpt.data.schema import (
    COMMENTS_FILE,
    COMMENTS_SCHEMA,
    COUNT_COLUMNS,
    NEW_SAMPLES_SCHEMA,
    NUM_LEVELS,
    PLATFORMS,
    SAMPLES_FILE,
    SAMPLES_SCHEMA,
    SECONDS_PER_DAY,
    SPLITS,
    SUMMARY_FILE,
)
from netgpt.data.source import JsonSource, json_source
from netgpt.data.split import assign_splits, final_states, video_post_days
from netgpt.data.summary import ImportSummary
from netgpt.data.validate import Anomalies, DataError, SampleParser, check_states

ROWS_PER_GROUP = 4096
"""Samples per parquet row group (and per buffer while streaming)."""
_STAGING_FILE = ".samples.staging.parquet"


class _CountingReader:
    """A binary file that tells the progress bar, and remembers, how many bytes the parser has read."""

    def __init__(self, file: IO[bytes], bar: tqdm) -> None:
        self.file, self.bar = file, bar
        self.position = self.chunk_start = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.chunk_start, self.position = self.position, self.position + len(chunk)
        self.bar.update(len(chunk))
        return chunk


class _DiscardEvents:
    """A sink for parser events that keeps none (the offset search needs only where parsing fails)."""

    def send(self, event: object) -> None:
        pass


def _json_error_offset(source: JsonSource, chunk_start: int) -> int:
    """The byte offset at which the JSON parser fails: parse again, feeding the failing chunk byte by byte.

    ijson's C backend names no position, only the chunk it was fed; this re-read (an error path only) pushes
    the file up to that chunk in large pieces, then one byte at a time, to find the byte it rejects.
    """
    parser = ijson.basic_parse_coro(_DiscardEvents())
    position = 0
    with source.open() as file:
        try:
            while position < chunk_start:
                piece = file.read(min(READ_BYTES, chunk_start - position))
                parser.send(piece)
                position += len(piece)
            while byte := file.read(1):
                parser.send(byte)
                position += 1
            parser.close()
        except ijson.JSONError:
            return position
    return position


class _RowBuffer:
    """Column lists of one row group, handed to a parquet writer when full."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema) -> None:
        self.writer, self.schema = writer, schema
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        for name, values in self.columns.items():
            values.append(row[name])
        self.rows += 1

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pydict(self.columns, schema=self.schema))
            self.columns = {name: [] for name in self.schema.names}
            self.rows = 0


def _stream_samples(
    source: JsonSource, folder: Path, parser: SampleParser, progress: bool, schema: pa.Schema = SAMPLES_SCHEMA
) -> tuple[int, int]:
    """Pass 1: validate every sample and write the staging samples (in `schema`) and the comments;
    (samples, comments)."""
    samples = comments = 0
    last_key = None
    with (
        source.open() as raw,
        tqdm(
            total=source.size,
            unit="B",
            unit_scale=True,
            desc=f"importing {Path(source.name).name}",
            disable=not progress,
        ) as bar,
        pq.ParquetWriter(folder / _STAGING_FILE, schema) as samples_writer,
        pq.ParquetWriter(folder / COMMENTS_FILE, COMMENTS_SCHEMA) as comments_writer,
    ):
        reader = _CountingReader(raw, bar)
        sample_rows = _RowBuffer(samples_writer, schema)
        comment_rows = _RowBuffer(comments_writer, COMMENTS_SCHEMA)
        try:
            for key, value in iter_samples(reader, source.name):
                row, comment_list = parser.parse(key, value)
                row["is_final_state"], row["split"] = False, ""
                sample_rows.add(row)
                for comment in comment_list:
                    comment_rows.add(comment)
                samples += 1
                comments += len(comment_list)
                last_key = key
                if sample_rows.rows >= ROWS_PER_GROUP:
                    sample_rows.flush()
                    comment_rows.flush()
        except ijson.JSONError as err:
            offset = _json_error_offset(source, reader.chunk_start)
            after = f" (after sample {last_key})" if last_key is not None else ""
            reason = err.args[0] if err.args else ""
            reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            reason = reason.splitlines()[0] if reason else type(err).__name__
            raise DataError(
                source.name, f"invalid or truncated JSON at byte {offset}{after}: {reason}"
            ) from None
        sample_rows.flush()
        comment_rows.flush()
    if samples == 0:
        raise DataError(source.name, "no samples: expected one JSON object keyed by sample id")
    return samples, comments


def _codes(table: pa.Table, column: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a dictionary-read string column, and its distinct values."""
    array = table.column(column).combine_chunks()
    return array.indices.to_numpy(zero_copy_only=False).astype(np.int64), array.dictionary.to_pylist()


def _per_video_differs(video_codes: np.ndarray, n_videos: int, values: np.ndarray) -> np.ndarray:
    """True for each video whose rows do not all share one value."""
    low = np.full(n_videos, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(n_videos, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(low, video_codes, values)
    np.maximum.at(high, video_codes, values)
    return low != high


def _histogram(values: np.ndarray) -> dict[str, int]:
    counts = np.bincount(values, minlength=NUM_LEVELS)
    return {str(level): int(counts[level]) for level in range(NUM_LEVELS)}


def _finish(
    source: JsonSource, folder: Path, data_cfg: DataConfig, parser: SampleParser, comments: int
) -> ImportSummary:
    """Pass 2: cross-sample rules, anomalies, final states, splits; write `samples.parquet`."""
    staging = folder / _STAGING_FILE
    small = pq.read_table(
        staging,
        columns=[
            "sample_id",
            "video_id",
            "platform",
            "topic",
            "author_id",
            "post_time",
            "crawl_date",
            "level",
            *COUNT_COLUMNS,
            "history_ids",
        ],
        read_dictionary=["video_id", "platform", "topic", "author_id"],
    )
    sample_ids = small.column("sample_id").to_numpy()
    video_codes, video_names = _codes(small, "video_id")
    platform_codes, platform_names = _codes(small, "platform")
    topic_codes, topic_names = _codes(small, "topic")
    author_codes, author_names = _codes(small, "author_id")
    post_s = small.column("post_time").cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    crawl_days = small.column("crawl_date").cast(pa.int32()).to_numpy().astype(np.int64)
    levels = small.column("level").to_numpy().astype(np.int64)
    history = small.column("history_ids").combine_chunks()
    anomalies = parser.anomalies
    check_states(
        source.name,
        sample_ids,
        video_codes,
        crawl_days,
        history.value_parent_indices().to_numpy(),
        history.flatten().to_numpy(),
    )

    is_final = final_states(video_codes, crawl_days, sample_ids)
    post_days = video_post_days(video_codes, post_s // SECONDS_PER_DAY)
    split = assign_splits(post_days, is_final, data_cfg.split_date, data_cfg.val_days)

    n_videos = len(video_names)
    order = np.lexsort((sample_ids, crawl_days, video_codes))
    same_video = video_codes[order[1:]] == video_codes[order[:-1]]
    for column in COUNT_COLUMNS:
        values = small.column(column).to_numpy()[order]
        anomalies.add(
            f"count_decrease_{column}", sample_ids[order[1:]][same_video & (values[1:] < values[:-1])]
        )
    first_rows = np.flatnonzero(np.r_[True, ~same_video])
    first_row_of_video = np.empty(n_videos, dtype=np.int64)
    first_row_of_video[video_codes[order[first_rows]]] = order[first_rows]
    anomalies.add(
        "label_differs_between_states",
        sample_ids[first_row_of_video[_per_video_differs(video_codes, n_videos, levels)]],
    )
    fields_differ = np.zeros(n_videos, dtype=bool)
    for codes in (platform_codes, topic_codes, author_codes, post_s):
        fields_differ |= _per_video_differs(video_codes, n_videos, codes)
    anomalies.add("video_fields_differ_between_states", sample_ids[first_row_of_video[fields_differ]])
    state_rank = np.arange(len(order)) - np.repeat(first_rows, np.diff(np.r_[first_rows, len(order)]))
    history_lengths = np.diff(history.offsets.to_numpy())[order]
    anomalies.add("history_incomplete", sample_ids[order][history_lengths < state_rank])
    for p, platform in enumerate(platform_names):
        on_platform = platform_codes == p
        for column in COUNT_COLUMNS:
            zero = on_platform & (small.column(column).to_numpy() == 0)
            if zero.sum() * 2 >= on_platform.sum():
                anomalies.add(f"zero_{column}_{platform}", sample_ids[zero])

    _write_samples(staging, folder / SAMPLES_FILE, is_final, split)
    staging.unlink()

    platform_of_video = np.empty(n_videos, dtype=np.int64)
    platform_of_video[video_codes[is_final]] = platform_codes[is_final]
    per_platform = {}
    for name in [*PLATFORMS, *sorted(set(platform_names) - set(PLATFORMS))]:
        if name in platform_names:
            code = platform_names.index(name)
            per_platform[name] = {
                "samples": int((platform_codes == code).sum()),
                "videos": int((platform_of_video == code).sum()),
            }
    return ImportSummary(
        input=source.name,
        input_bytes=source.size,
        samples=len(sample_ids),
        videos=n_videos,
        comments=comments,
        topics=len(topic_names),
        authors=len(author_names),
        first_post_date=str(np.datetime64(int(post_s.min()), "s").astype("datetime64[D]")),
        last_post_date=str(np.datetime64(int(post_s.max()), "s").astype("datetime64[D]")),
        platforms=per_platform,
        video_levels=_histogram(levels[is_final]),
        sample_levels=_histogram(levels),
        splits={name: int((split == name).sum()) for name in SPLITS},
        split_date=data_cfg.split_date,
        val_days=data_cfg.val_days,
        missing_keys=parser.missing_keys.as_dict(),
        unknown_keys=parser.unknown_keys.as_dict(),
        anomalies=dict(sorted(anomalies.counts.items())),
        anomaly_examples={kind: anomalies.examples[kind] for kind in sorted(anomalies.counts)},
    )


def _write_samples(staging: Path, target: Path, is_final: np.ndarray, split: np.ndarray) -> None:
    """Copy the staging table row group by row group, filling in `is_final_state` and `split`."""
    final_index = SAMPLES_SCHEMA.get_field_index("is_final_state")
    split_index = SAMPLES_SCHEMA.get_field_index("split")
    source = pq.ParquetFile(staging)
    start = 0
    with pq.ParquetWriter(target, SAMPLES_SCHEMA) as writer:
        for group in range(source.num_row_groups):
            # parquet keeps seconds as milliseconds and names list items differently: cast back
            table = source.read_row_group(group).cast(SAMPLES_SCHEMA)
            end = start + table.num_rows
            table = table.set_column(
                final_index, SAMPLES_SCHEMA.field(final_index), pa.array(is_final[start:end])
            )
            table = table.set_column(
                split_index, SAMPLES_SCHEMA.field(split_index), pa.array(split[start:end], pa.string())
            )
            writer.write_table(table)
            start = end
    source.close()


TABLES_KIND = "tables"
TABLE_FILES = frozenset([SAMPLES_FILE, COMMENTS_FILE, SUMMARY_FILE, CONFIG_FILE])


def looks_like_tables(folder: Path) -> bool:
    """A tables folder an older netgpt wrote (before the output marker): nothing but the tables' files."""
    return {path.name for path in folder.iterdir()} <= TABLE_FILES


def import_json(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    data_cfg: DataConfig,
    progress: bool = True,
    config: NetGPTConfig | None = None,
) -> ImportSummary:
    """Import a released (or synthetic) XS-Video JSON file, or a zip archive holding one, into `out_dir`;
    return what it found.

    `out_dir` receives `samples.parquet`, `comments.parquet`, `summary.json` and, when `config` is given, the
    resolved `config.yaml`, all at once. Raises `DataError` on a sample that breaks a rule.
    """
    source, out_dir = json_source(input_path), Path(out_dir)
    started = time.perf_counter()
    parser = SampleParser(source.name, Anomalies(), strict_keys=data_cfg.strict_keys)
    with atomic_directory(out_dir, TABLES_KIND, looks_like_tables) as folder:
        _, comments = _stream_samples(source, folder, parser, progress)
        summary = _finish(source, folder, data_cfg, parser, comments)
        summary.seconds = round(time.perf_counter() - started, 3)
        summary.write(folder)
        if config is not None:
            save_config(config, folder)
    return summary


def import_new_samples(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    data_cfg: DataConfig,
    progress: bool = True,
) -> tuple[str, int]:
    """Validate new samples to rate (`netgpt predict`) exactly as `import_json` does, the level optional.

    Writes `samples.parquet` (`NEW_SAMPLES_SCHEMA`: the level null where the input has none; no final state,
    no split) and `comments.parquet` into `out_dir`, all at once. Checks every per-sample rule and the
    duplicate-id rule; the earlier-state ids (`历史状态`) may name samples of the input or of the graph store,
    so `netgpt.graph.extend` checks them against both. Returns (the input's name for errors, samples).
    Raises `DataError` on a sample that breaks a rule.
    """
    source, out_dir = json_source(input_path), Path(out_dir)
    parser = SampleParser(source.name, Anomalies(), strict_keys=data_cfg.strict_keys, labels_optional=True)
    with atomic_directory(out_dir, "new samples") as folder:
        samples, _ = _stream_samples(source, folder, parser, progress, NEW_SAMPLES_SCHEMA)
        sample_ids = pq.read_table(folder / _STAGING_FILE, columns=["sample_id"])["sample_id"].to_numpy()
        no_history = np.zeros(0, dtype=np.int64)
        check_states(source.name, sample_ids, np.zeros_like(sample_ids), sample_ids, no_history, no_history)
        os.replace(folder / _STAGING_FILE, folder / SAMPLES_FILE)
    return source.name, samples
