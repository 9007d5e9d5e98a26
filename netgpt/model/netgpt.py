"""NetGPT (docs/model.md): graph encoder + projector + causal LLM + regression heads, and its folder format.

tokenizer = train_tokenizer(texts, cfg.tiny_llm.vocab_size)     # or load_tokenizer(cfg) for llm_path
model = NetGPT.build(cfg, feature_dims, tokenizer)
prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
out = model(batch, prompts, {"answer_ce": 1.0, "prompt_regression": 1.0})
out.loss.backward()
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.data import HeteroData
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from netgpt.atomic import replace_directory
from netgpt.config import LOSS_TERMS, PREDICTIONS, ModelConfig, TinyLLMConfig
from netgpt.graph.types import VIDEO
from netgpt.model.encoder import build_encoder
from netgpt.model.heads import LevelHead, answer_cross_entropy, regression_loss
from netgpt.model.llm import build_llm, grow_vocabulary, load_saved_tokenizer
from netgpt.model.projector import Projector
from netgpt.model.prompt import PromptBatch, PromptBuilder, parse_level
from netgpt.model.tokenizer import GRAPH_PAD, add_graph_tokens

FORMAT_VERSION = 1
CONFIG_FILE = "netgpt_config.json"
LLM_DIR = "llm"
PART_FILES = {
    "encoder": "encoder.safetensors",
    "projector": "projector.safetensors",
    "graph_head": "graph_head.safetensors",
    "prompt_head": "prompt_head.safetensors",
}
MAX_ANSWER_TOKENS = 4


@dataclass
class NetGPTOutput:
    loss: torch.Tensor
    """Weighted sum of the requested loss terms."""
    losses: dict[str, torch.Tensor]
    """Each requested term (graph_regression, answer_ce, prompt_regression), unweighted."""
    graph_pred: torch.Tensor
    """[B] levels from the stage-1 head on the seed embeddings."""
    prompt_pred: torch.Tensor | None
    """[B] levels from the head on the last prompt token's hidden state; None when the LLM did not run."""


class NetGPT(nn.Module):
    """Parts named as in `StageConfig.trainable`: encoder, projector, llm, graph_head, prompt_head.

    Every part runs in every forward that runs the LLM (the heads too, whatever the loss weights), so ZeRO-3
    ranks always run the same modules."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        feature_dims: dict[str, int],
        tokenizer: PreTrainedTokenizerBase,
        llm: PreTrainedModel,
    ) -> None:
        super().__init__()
        self.config = model_cfg
        self.feature_dims = dict(feature_dims)
        self.tokenizer = add_graph_tokens(tokenizer)
        # on a meta-device skeleton (netgpt.convert builds one to write a folder) the new rows get no values:
        # the checkpoint's overwrite them
        grow_vocabulary(llm, len(self.tokenizer))
        llm_hidden = llm.config.get_text_config().hidden_size
        self.encoder = build_encoder(
            model_cfg.encoder,
            feature_dims,
            model_cfg.hidden_size,
            model_cfg.num_layers,
            model_cfg.dropout,
            model_cfg.num_graph_tokens,
            model_cfg.hgt_heads,
        )
        self.projector = Projector(
            model_cfg.hidden_size, llm_hidden, model_cfg.projector_layers, model_cfg.dropout
        )
        self.llm = llm
        if model_cfg.gradient_checkpointing:
            # non-reentrant: recomputes under ZeRO-3 too, and needs no input that requires grad
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.graph_head = LevelHead(model_cfg.hidden_size)
        self.prompt_head = LevelHead(llm_hidden)
        self.graph_pad_id = self.tokenizer.convert_tokens_to_ids(GRAPH_PAD)
        self.trained_for: dict | None = None
        """The `training_record` of a loaded folder (None when unknown); `save_pretrained` writes it back."""

    @classmethod
    def build(
        cls,
        model_cfg: ModelConfig,
        feature_dims: dict[str, int],
        tokenizer: PreTrainedTokenizerBase,
        llm: PreTrainedModel | None = None,
    ) -> NetGPT:
        """A new model; `llm=None` loads `model_cfg.llm_path` or builds `model_cfg.tiny_llm`."""
        tokenizer = add_graph_tokens(tokenizer)
        return cls(
            model_cfg, feature_dims, tokenizer, llm if llm is not None else build_llm(model_cfg, tokenizer)
        )

    def zero3_leaf_modules(self) -> list[type[nn.Module]]:
        """Classes to pass to `deepspeed.utils.set_z3_leaf_modules(model, ...)` under ZeRO-3 (maybe none)."""
        return list(self.encoder.zero3_leaves)

    def prompt_builder(self, graph_tokens: bool = True) -> PromptBuilder:
        """Prompts with the model's graph tokens, or (`graph_tokens=False`) without any: the LLM alone."""
        cfg = self.config
        return PromptBuilder(
            self.tokenizer,
            cfg.prompt_language,
            cfg.max_prompt_tokens,
            cfg.num_graph_tokens if graph_tokens else 0,
        )

    def forward(
        self,
        batch: HeteroData,
        prompts: PromptBatch | None,
        loss_weights: dict[str, float],
        graph_tokens: bool = True,
    ) -> NetGPTOutput:
        """`graph_tokens=False`: the prompts hold no graph tokens (`prompt_builder(graph_tokens=False)`) and
        the LLM sees the text alone; the encoder still runs for the graph head."""
        unknown = [name for name in loss_weights if name not in LOSS_TERMS]
        if unknown:
            raise ValueError(f"loss_weights: unknown terms {unknown}; expected among {list(LOSS_TERMS)}")
        needs_llm = [name for name in loss_weights if LOSS_TERMS[name].needs_llm]
        if prompts is None and needs_llm:
            raise ValueError(f"loss_weights {dict(loss_weights)}: {needs_llm} need prompts")
        encoded = self.encoder(batch)
        graph_pred = self.graph_head(encoded.summary)
        losses: dict[str, torch.Tensor] = {}
        prompt_pred = None
        if loss_weights:
            target = batch[VIDEO].y[: graph_pred.size(0)]
        if "graph_regression" in loss_weights:
            losses["graph_regression"] = regression_loss(self.config.regression_loss, graph_pred, target)
        if prompts is not None:
            prompts = prompts.to(graph_pred.device)
            out = self.llm(
                inputs_embeds=self._embed(encoded.tokens if graph_tokens else None, prompts),
                attention_mask=prompts.attention_mask,
                position_ids=prompts.position_ids,
                output_hidden_states=True,
                use_cache=False,
            )
            rows = torch.arange(prompts.input_ids.size(0), device=graph_pred.device)
            prompt_pred = self.prompt_head(out.hidden_states[-1][rows, prompts.last_prompt_index])
            if "answer_ce" in loss_weights:
                if not (prompts.labels != -100).any():
                    raise ValueError(
                        "answer_ce: the prompts hold no answer tokens (encode with with_answer=True)"
                    )
                losses["answer_ce"] = answer_cross_entropy(out.logits, prompts.labels)
            if "prompt_regression" in loss_weights:
                losses["prompt_regression"] = regression_loss(
                    self.config.regression_loss, prompt_pred, target
                )
        if losses:
            loss = sum(loss_weights[name] * value for name, value in losses.items())
        else:
            loss = graph_pred.new_zeros(())
        return NetGPTOutput(loss=loss, losses=losses, graph_pred=graph_pred, prompt_pred=prompt_pred)

    def _embed(self, graph_tokens: torch.Tensor | None, prompts: PromptBatch) -> torch.Tensor:
        """The prompts' token embeddings with each `<|graph_pad|>` replaced by a projected graph token
        (`graph_tokens=None`: prompts without any, the LLM alone)."""
        embeds = self.llm.get_input_embeddings()(prompts.input_ids)
        pads = prompts.input_ids == self.graph_pad_id
        if graph_tokens is None:
            if pads.any():
                raise ValueError(f"prompts hold {int(pads.sum())} {GRAPH_PAD} tokens, expected none")
            return embeds
        expected = graph_tokens.size(0) * graph_tokens.size(1)
        if int(pads.sum()) != expected or graph_tokens.size(0) != prompts.input_ids.size(0):
            raise ValueError(
                f"prompts hold {int(pads.sum())} {GRAPH_PAD} tokens in {prompts.input_ids.size(0)} rows; "
                f"expected "
                f"{graph_tokens.size(1)} in each of {graph_tokens.size(0)} rows (one row per seed)"
            )
        projected = self.projector(graph_tokens).to(embeds.dtype)
        return embeds.masked_scatter(pads.unsqueeze(-1), projected.reshape(-1, projected.size(-1)))

    @torch.no_grad()
    def generate_levels(
        self,
        batch: HeteroData,
        prompts: PromptBatch,
        synced_gpus: bool,
        graph_tokens: bool = True,
        answers: Sequence[Sequence[int]] | None = None,
    ) -> list[float | None]:
        """Greedy answers to prompts encoded without answers, parsed as numbers (None when unparsable).

        `answers`: the token ids of every answer the model may write (`PromptBuilder.answer_ids` of each
        level); generation is then constrained to them (transformers' `prefix_allowed_tokens_fn`), so an
        answer is always a level: the most likely one token by token. None leaves generation free.
        `synced_gpus=True` under ZeRO-3: every rank keeps stepping until all ranks are done."""
        prompts = prompts.to(self.llm.get_input_embeddings().weight.device)
        allowed = None if answers is None else _allowed_next_tokens(answers, self.tokenizer)
        generated = self.llm.generate(
            inputs_embeds=self._embed(self.encoder(batch).tokens if graph_tokens else None, prompts),
            attention_mask=prompts.attention_mask,
            max_new_tokens=MAX_ANSWER_TOKENS if answers is None else max(len(ids) for ids in answers),
            do_sample=False,
            synced_gpus=synced_gpus,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            prefix_allowed_tokens_fn=allowed,
        )
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [parse_level(text) for text in texts]

    def folder_config(self, training: dict | None = None) -> dict[str, Any]:
        """What `netgpt_config.json` holds: the format version, the model config, the feature dims and, when
        known, the `training_record` (also written by `netgpt.convert`, which builds folders of this format
        without a materialised model)."""
        return {
            "format_version": FORMAT_VERSION,
            "model": asdict(self.config),
            "feature_dims": self.feature_dims,
            **({"training": training} if training is not None else {}),
        }

    def save_pretrained(
        self,
        folder: str | os.PathLike[str],
        state_dict: dict[str, torch.Tensor] | None = None,
        training: dict | None = None,
    ) -> Path:
        """Write the model folder atomically (temporary folder, then rename over any old one).

        `state_dict` (e.g. consolidated from a ZeRO-3 checkpoint) replaces the module's own tensors.
        `training`: what the weights were trained for (`training_record`, by default `trained_for`;
        `read_training_record` reads it back)."""
        training = training if training is not None else self.trained_for
        folder = Path(folder)
        state = state_dict if state_dict is not None else self.state_dict()
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        prefix = f"{LLM_DIR}."
        self.llm.save_pretrained(
            tmp / LLM_DIR, state_dict={k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
        self.tokenizer.save_pretrained(tmp / LLM_DIR)
        for part, file in PART_FILES.items():
            part_state = {
                k[len(part) + 1 :]: v.detach().cpu().contiguous()
                for k, v in state.items()
                if k.startswith(f"{part}.")
            }
            save_file(part_state, tmp / file, metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(
            json.dumps(self.folder_config(training), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        replace_directory(tmp, folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str]) -> NetGPT:
        """The NetGPT folder `folder` (`save_pretrained`'s), in eval mode as transformers' `from_pretrained`
        returns a model: rating with it (`netgpt evaluate`, `netgpt predict`) must not drop out; call
        `.train()` to train it."""
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path}: missing; expected a NetGPT folder written by save_pretrained"
            )
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{config_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        for path in [folder / LLM_DIR / "config.json", *(folder / f for f in PART_FILES.values())]:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing from the NetGPT folder {folder}")
        fields = dict(meta["model"])
        model_cfg = ModelConfig(**{**fields, "tiny_llm": TinyLLMConfig(**fields["tiny_llm"])})
        tokenizer = load_saved_tokenizer(folder / LLM_DIR)
        llm = AutoModelForCausalLM.from_pretrained(folder / LLM_DIR, local_files_only=True)
        model = cls(model_cfg, meta["feature_dims"], tokenizer, llm)
        for part, file in PART_FILES.items():
            model.get_submodule(part).load_state_dict(load_file(folder / file))
        model.trained_for = meta.get("training")
        return model.eval()


def training_record(stage_name: str, predictions: list[str], graph_tokens: bool) -> dict:
    """What a folder's weights were trained for: the stage they come from, the predictions that stage
    trained (the others come from untrained heads) and whether its prompts held graph tokens."""
    return {"stage": stage_name, "predictions": list(predictions), "graph_tokens": bool(graph_tokens)}


def read_training_record(folder: str | os.PathLike[str]) -> dict:
    """The folder's `training_record`; a folder without one is taken as trained for every prediction, with
    graph tokens."""
    config_path = Path(folder) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path}: missing; expected a NetGPT folder written by save_pretrained"
        )
    recorded = json.loads(config_path.read_text(encoding="utf-8")).get("training", {})
    return {"stage": None, "predictions": list(PREDICTIONS), "graph_tokens": True, **recorded}


def _allowed_next_tokens(
    answers: Sequence[Sequence[int]], tokenizer
) -> Callable[[int, torch.Tensor], list[int]]:
    """`prefix_allowed_tokens_fn` for `generate`: after the tokens generated so far (the prompt came as
    embeddings, so `generated` holds only new tokens), the tokens that continue one of `answers`; a finished
    answer (or a row already padded) may only be followed by eos or padding."""
    prefixes: dict[tuple[int, ...], set[int]] = {}
    for ids in answers:
        for end in range(len(ids)):
            prefixes.setdefault(tuple(ids[:end]), set()).add(int(ids[end]))
    stop = sorted({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
    table = {prefix: sorted(tokens) for prefix, tokens in prefixes.items()}

    def allowed(_row: int, generated: torch.Tensor) -> list[int]:
        return table.get(tuple(generated.tolist()), stop)

    return allowed
