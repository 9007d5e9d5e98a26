"""NetGPT: graph encoder, projector, prompts, causal LLM and heads (docs/model.md)."""

from netgpt.model.netgpt import NetGPT, NetGPTOutput
from netgpt.model.prompt import PromptBatch, PromptBuilder
from netgpt.model.tokenizer import train_tokenizer

__all__ = ["NetGPT", "NetGPTOutput", "PromptBatch", "PromptBuilder", "train_tokenizer"]
