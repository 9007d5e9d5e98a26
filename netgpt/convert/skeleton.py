"""NetGPT built on the `meta` device: names, shapes, HF config and generation config, and no weights.

Building it the way the trainer does (same config, tokenizer with the graph tokens, feature dims) gives the
exact HF config the trained LLM had, and the set of names and shapes the checkpoint must hold; on `meta` it
costs no memory whatever the model's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedModel

from netgpt.convert.errors import ConvertError
from netgpt.convert.run_pieces import RunPieces
from netgpt.model.llm import tiny_llm_config
from netgpt.model.netgpt import NetGPT
from netgpt.model.pretrained import llm_folder
from netgpt.model.tokenizer import add_graph_tokens


def build_skeleton(pieces: RunPieces) -> NetGPT:
    """The run's NetGPT with every parameter and buffer on `meta`."""
    from transformers import AutoTokenizer

    # the trainer's own way of reading the run's tokenizer (netgpt.train.worker.Curriculum)
    tokenizer = add_graph_tokens(AutoTokenizer.from_pretrained(pieces.tokenizer_dir))
    model_cfg = pieces.config.model
    with torch.device("meta"):
        if model_cfg.llm_path:
            try:
                folder = llm_folder(model_cfg)  # a GGUF's converted folder, as the trainer loaded it
                llm_config = AutoConfig.from_pretrained(folder, local_files_only=True)
            except OSError as error:
                raise ConvertError(
                    f"{model_cfg.llm_path}: the LLM's config cannot be read (model.llm_path): {error}"
                ) from None
            llm = AutoModelForCausalLM.from_config(llm_config)
            if (folder / "generation_config.json").is_file():
                llm.generation_config = GenerationConfig.from_pretrained(folder)
        else:
            llm = AutoModelForCausalLM.from_config(tiny_llm_config(model_cfg.tiny_llm, tokenizer, model_cfg))
        return NetGPT(model_cfg, pieces.feature_dims, tokenizer, llm)


def check_matches(skeleton: NetGPT, tensors: Mapping[str, Any], where: Path) -> None:
    """The checkpoint holds exactly the skeleton's tensors, with the same shapes (else the config is not the
    checkpoint's: another run's config.yaml, or --config for another model)."""
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        f"{name} {tuple(tensors[name].shape)} vs {tuple(expected[name].shape)}"
        for name in set(expected) & set(tensors)
        if tuple(tensors[name].shape) != tuple(expected[name].shape)
    )
    if missing or unexpected or wrong:
        raise ConvertError(
            f"{where}: does not match the model its config describes: "
            + "; ".join(
                f"{label} {items[:3]}{' ...' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("shapes", wrong))
                if items
            )
        )


def saved_llm_names(llm: PreTrainedModel) -> list[str]:
    """The LLM's tensor names as `save_pretrained` writes them: tied copies dropped by transformers' own rule
    (an lm_head tied to the embeddings is not written)."""
    state = llm.state_dict()
    try:
        from transformers.modeling_utils import remove_tied_weights_from_state_dict
    except ImportError:  # an older transformers: keep the first name of each shared parameter
        shared = {name for name, _ in llm.named_parameters(remove_duplicate=False)}
        kept = {name for name, _ in llm.named_parameters()}
        return [name for name in state if name not in shared or name in kept]
    return list(remove_tied_weights_from_state_dict(state, llm))
