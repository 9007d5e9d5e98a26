"""`convert`: one checkpoint to one NetGPT folder, checked and published atomically; `export_run`: the
checkpoint a finished run is exported from.

Every input is checked before anything is written (bad input is a `ConvertError`, OUT untouched). The folder
is built under a temporary name beside OUT, read back and compared with the consolidated weights, and only
then renamed to OUT: an interrupted or failed conversion never leaves a half-written OUT.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from netgpt.atomic import replace_directory
from netgpt.config import ConfigError, load_config
from netgpt.convert.card import model_card, read_state, trained_record
from netgpt.convert.errors import ConvertError
from netgpt.convert.locate import best_of_stage, latest_registered, resolve
from netgpt.convert.run_pieces import CONFIG_FILE, read_run
from netgpt.convert.shards import inspect, lazy_state_dict
from netgpt.convert.skeleton import build_skeleton, check_matches
from netgpt.convert.verify import verify_folder
from netgpt.convert.writer import DEFAULT_MAX_SHARD_SIZE, DTYPES, write_folder
from netgpt.train.checkpoint import DS_TAG

CARD_FILE = "README.md"
MODEL_DIR = "model"
"""A run's own export: `run_dir/model`."""


def convert(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    tag: str = DS_TAG,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> Path:
    """Write the NetGPT folder `out` from `checkpoint` (a checkpoint, best/<stage> or run folder).

    `config`: a preset name or YAML path instead of the run's saved `config.yaml`. `dtype`: `fp32` (the
    master weights as they are) or `bf16`. Returns `out`."""
    if dtype not in DTYPES:
        raise ConvertError(f"dtype {dtype!r}: expected one of {sorted(DTYPES)}")
    out = Path(out).resolve()
    source = resolve(checkpoint)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ConvertError(f"{out}: already exists; pass --overwrite to replace it")
    if out == source.folder or source.folder.is_relative_to(out):
        raise ConvertError(f"{out}: would replace the checkpoint {source.folder} it is converted from")
    state = read_state(source.folder)
    zero = inspect(source.folder, tag)
    pieces = read_run(source.run_dir, config)
    skeleton = build_skeleton(pieces)
    weights = lazy_state_dict(source.folder, tag)
    check_matches(skeleton, weights.tensors, zero.tag_dir)
    torch_dtype = DTYPES[dtype]
    stages = [stage.name for stage in pieces.config.train.stages]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.converting-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        training = trained_record(source, state, pieces.config.train.stages)
        write_folder(tmp, skeleton, weights, torch_dtype, max_shard_size, training)
        (tmp / CARD_FILE).write_text(model_card(source, state, skeleton, stages, dtype), encoding="utf-8")
        verify_folder(tmp, skeleton, weights, torch_dtype)
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export_source(run_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint a run is exported from: the best checkpoint of its last stage when the run wrote one
    (`run_dir/best/<last stage>`), else its latest complete (registered) checkpoint."""
    run_dir = Path(run_dir).resolve()
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConvertError(f"{config_path}: missing; expected the run's saved config")
    try:
        last_stage = load_config(config_path).train.stages[-1].name
    except ConfigError as error:
        raise ConvertError(f"{config_path}: {error}") from None
    return best_of_stage(run_dir, last_stage) or latest_registered(run_dir)


def export_run(run_dir: str | os.PathLike[str], dtype: str = "fp32") -> Path:
    """Convert the run's export checkpoint (`export_source`) into `run_dir/model`, replacing an older one."""
    run_dir = Path(run_dir).resolve()
    return convert(export_source(run_dir), run_dir / MODEL_DIR, dtype=dtype, overwrite=True)
