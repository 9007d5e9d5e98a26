"""The runtime-trained byte-level BPE."""

from __future__ import annotations

import pytest

from netgpt.model.tokenizer import GRAPH_TOKENS, train_tokenizer


def test_trained_tokenizer_has_the_special_tokens():
    tokenizer = train_tokenizer(["hello world", "短视频 传播"] * 10, vocab_size=300)
    ids = tokenizer.convert_tokens_to_ids(list(GRAPH_TOKENS))
    assert len(set(ids)) == 3 and all(
        tokenizer.decode([i]) == t for i, t in zip(ids, GRAPH_TOKENS, strict=True)
    )
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    # A graph token inside text is one token, never split.
    encoded = tokenizer("a <|graph_pad|> b", add_special_tokens=False)["input_ids"]
    assert ids[1] in encoded


def test_any_text_round_trips_byte_level():
    tokenizer = train_tokenizer(["only ascii here"] * 5, vocab_size=300)
    text = "未见过的汉字 and émojis 🎬"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_merges_are_learned_from_the_texts():
    tokenizer = train_tokenizer(["influence level"] * 50, vocab_size=400)
    assert len(tokenizer("influence", add_special_tokens=False)["input_ids"]) < len("influence")


def test_vocab_too_small():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["x"], vocab_size=100)


def test_digits_are_single_tokens_whatever_the_texts():
    """Numbers in the texts would otherwise merge (" 0" from "from 0", "12" from counts) and make the ten
    levels' answers differ in length."""
    tokenizer = train_tokenizer(["from 0 to 9, likes 1200, 2024-12-21"] * 50, vocab_size=300)
    for text in (" 0", "1200", "2024"):
        pieces = [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
        assert [p for p in pieces if p.strip()] == [c for c in text if c.strip()]
