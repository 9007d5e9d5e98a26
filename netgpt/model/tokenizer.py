"""Tokenizers for NetGPT: the graph special tokens, and a tiny byte-level BPE trained at run time.

A tiny LLM built from config (tests, CPU demo) has no tokenizer of its own; training a byte-level BPE on the
data's text with `tokenizers` takes milliseconds, so one is trained on the fly rather than shipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

GRAPH_START = "<|graph_start|>"
GRAPH_PAD = "<|graph_pad|>"
GRAPH_END = "<|graph_end|>"
GRAPH_TOKENS = (GRAPH_START, GRAPH_PAD, GRAPH_END)

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `texts`, with eos, pad and the graph tokens as special tokens.

    Byte-level, so any text (Chinese included) encodes without unknown tokens whatever the training texts.
    Digits are always single tokens (as in Llama's and Qwen's tokenizers): a number is read digit by digit,
    and the ten levels' answers are ten tokens that no merge can make differ in length (" 0" merged from
    the template's "from 0" would make level 0 one token and level 1 two).
    """
    if vocab_size < 256 + len(GRAPH_TOKENS) + 2:
        raise ValueError(f"vocab_size: expected at least {256 + len(GRAPH_TOKENS) + 2} (bytes + specials)")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, *GRAPH_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD)
    add_graph_tokens(tokenizer)
    return tokenizer


def add_graph_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make the graph tokens special tokens of `tokenizer` and give it a pad token (idempotent, in place).

    A pretrained tokenizer without a pad token pads with eos: padded positions are masked out of attention
    and of the loss, so the choice of id does not matter.
    """
    missing = [t for t in GRAPH_TOKENS if t not in tokenizer.get_vocab()]
    if missing or any(t not in tokenizer.all_special_tokens for t in GRAPH_TOKENS):
        tokenizer.add_special_tokens(
            {"additional_special_tokens": list(GRAPH_TOKENS)}, replace_extra_special_tokens=False
        )
    if tokenizer.eos_token is None:
        raise ValueError("the LLM's tokenizer has no eos token: the answer could not end")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
