"""What a checkpoint's weights alone do not say, read from its run: config, tokenizer, feature dims.

The trainer saves the resolved config as `config.yaml` and the tokenizer as `tokenizer/` in the run folder,
and builds the encoder from the feature dims in the graph store's `meta.json`; conversion reads the same
three, so the skeleton it builds is the trainer's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netgpt.config import ConfigError, NetGPTConfig, load_config
from netgpt.convert.errors import ConvertError

CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"


@dataclass
class RunPieces:
    config: NetGPTConfig
    tokenizer_dir: Path
    feature_dims: dict[str, int]


def read_run(run_dir: Path, config: str | Path | None = None) -> RunPieces:
    """The run's config (or `config`, a preset name or YAML path), tokenizer folder and feature dims."""
    from netgpt.graph.store import StoreError, read_meta

    if config is None:
        config_path = run_dir / CONFIG_FILE
        if not config_path.is_file():
            raise ConvertError(
                f"{config_path}: missing; expected the run's saved config beside its checkpoints "
                "(or pass --config)"
            )
        config = config_path
    try:
        loaded = load_config(config)
    except ConfigError as error:
        raise ConvertError(f"{config}: {error}") from None
    tokenizer_dir = run_dir / TOKENIZER_DIR
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        raise ConvertError(
            f"{tokenizer_dir}: missing or incomplete; expected the run's tokenizer folder "
            "(with tokenizer_config.json)"
        )
    try:
        meta = read_meta(loaded.graph.store_dir)
    except StoreError as error:
        raise ConvertError(f"feature dims (graph.store_dir of {config}): {error}") from None
    if "feature_dims" not in meta:
        raise ConvertError(f"{Path(loaded.graph.store_dir) / 'meta.json'}: holds no feature_dims")
    return RunPieces(loaded, tokenizer_dir, dict(meta["feature_dims"]))
