"""The prompt template: golden renderings (en, zh), answer labels, truncation, padding."""

from __future__ import annotations

import string

import pytest
import torch

from netgpt.data.schema import COUNT_COLUMNS
from netgpt.graph.seeds import SEED_FIELDS
from netgpt.model.prompt import TEMPLATES, PromptBuilder, parse_level, template_words
from netgpt.model.tokenizer import GRAPH_PAD

GOLDEN_EN = (
    "Short video on Douyin.\n"
    "Topic: 冬至吃饺子\n"
    "Title: Dumplings for the winter solstice #food\n"
    "Description: We made dumplings with the whole family.\n"
    "Posted: 2024-12-21 08:30:00; observed: 2024-12-23; duration: 43 s\n"
    "Counts so far: fans 1200, likes 35, views not shown, shares 4, collects 7, comments 12\n"
    "Propagation graph: <|graph_start|><|graph_pad|><|graph_pad|><|graph_end|>\n"
    "Question: on a scale from 0 (lowest) to 9 (highest), what will this video's propagation influence level "
    "be two weeks after it was posted?\n"
    "Answer: 3<|endoftext|>"
)

GOLDEN_ZH = (
    "这是一条发布在抖音的短视频。\n"
    "话题：冬至吃饺子\n"
    "标题：Dumplings for the winter solstice #food\n"
    "描述：We made dumplings with the whole family.\n"
    "发布时间：2024-12-21 08:30:00；观测日期：2024-12-23；时长：43秒\n"
    "当前数据：粉丝1200，点赞35，播放未显示，分享4，收藏7，评论12\n"
    "传播图：<|graph_start|><|graph_pad|><|graph_pad|><|graph_end|>\n"
    "问题：按0（最低）到9（最高）的等级，这条视频发布两周后的传播影响力等级是多少？\n"
    "答案：3<|endoftext|>"
)


def rendered(tokenizer, prompts, row: int) -> str:
    return tokenizer.decode(prompts.input_ids[row][prompts.attention_mask[row].bool()])


@pytest.mark.parametrize(("language", "golden"), [("en", GOLDEN_EN), ("zh", GOLDEN_ZH)])
def test_golden_prompt(tokenizer, make_batch, language, golden):
    fields = make_batch(num_seeds=1).seed_fields
    prompts = PromptBuilder(tokenizer, language, 400, num_graph_tokens=2).encode(fields, with_answer=True)
    assert rendered(tokenizer, prompts, 0) == golden
    answer = prompts.labels[0][prompts.labels[0] != -100]
    assert tokenizer.decode(answer).strip() == "3<|endoftext|>"
    # The last prompt token is the one just before the answer's first token.
    first_answer = int((prompts.labels[0] != -100).nonzero()[0])
    assert int(prompts.last_prompt_index[0]) == first_answer - 1


def test_prompt_without_answer_is_the_same_prompt(tokenizer, make_batch):
    builder = PromptBuilder(tokenizer, "en", 400, 1)
    fields = make_batch(num_seeds=2).seed_fields
    with_answer = builder.encode(fields, with_answer=True)
    without = builder.encode(fields, with_answer=False)
    assert (without.labels == -100).all()
    assert (without.last_prompt_index == without.input_ids.size(1) - 1).all()
    for row in range(2):
        last = int(with_answer.last_prompt_index[row])
        prompt = with_answer.input_ids[row][with_answer.attention_mask[row].bool()]
        assert (
            prompt[: without.attention_mask[row].sum()].tolist()
            == without.input_ids[row][without.attention_mask[row].bool()].tolist()
        )
        assert with_answer.input_ids[row, last] == without.input_ids[row, -1]


def test_rows_are_left_padded(tokenizer, make_batch):
    fields = make_batch(num_seeds=2).seed_fields
    fields[1]["description"] = "A much longer description. " * 10
    prompts = PromptBuilder(tokenizer, "en", 400, 1).encode(fields, with_answer=True)
    mask = prompts.attention_mask
    assert mask[1].all() and not mask[0].all()
    pad = int((mask[0] == 0).sum())
    assert (mask[0, :pad] == 0).all() and (prompts.input_ids[0, :pad] == tokenizer.pad_token_id).all()
    assert prompts.position_ids[0, pad] == 0 and prompts.position_ids[0, -1] == mask[0].sum() - 1


def test_truncation_keeps_graph_tokens_and_answer(tokenizer, make_batch):
    budget = 200
    fields = make_batch(num_seeds=2).seed_fields
    fields[0]["description"] = "very long description text " * 200
    fields[0]["title"] = "a long long title " * 100
    builder = PromptBuilder(tokenizer, "en", budget, num_graph_tokens=3)
    prompts = builder.encode(fields, with_answer=True)
    assert int(prompts.attention_mask[0].sum()) <= budget
    text = rendered(tokenizer, prompts, 0)
    assert "<|graph_start|>" + "<|graph_pad|>" * 3 + "<|graph_end|>" in text
    assert text.endswith("Answer: 3<|endoftext|>") and "Question:" in text
    assert "Title: a long long" in text and "Description: very long" in text
    assert text.count("very long description") < 200
    # Both long fields got a share of the budget; the short row is untouched.
    assert (prompts.input_ids[0] == tokenizer.convert_tokens_to_ids(GRAPH_PAD)).sum() == 3
    assert rendered(tokenizer, prompts, 1) == rendered(
        tokenizer, builder.encode(fields[1:], with_answer=True), 0
    )


def test_too_small_budget_names_the_sample(tokenizer, make_batch):
    with pytest.raises(ValueError, match="sample 100.*max_prompt_tokens"):
        PromptBuilder(tokenizer, "en", 40, 1).encode(make_batch(num_seeds=1).seed_fields, with_answer=False)


def test_missing_field_names_the_sample(tokenizer, make_batch):
    fields = make_batch(num_seeds=1).seed_fields
    del fields[0]["likes"]
    with pytest.raises(KeyError, match="sample 100.*'likes'"):
        PromptBuilder(tokenizer, "en", 400, 1).encode(fields, with_answer=False)


def test_zero_is_shown_where_the_platform_shows_the_count(tokenizer, make_batch):
    fields = make_batch(num_seeds=1).seed_fields
    fields[0].update(platform="快手", views=0, shares=0)
    text = rendered(tokenizer, PromptBuilder(tokenizer, "en", 400, 1).encode(fields, False), 0)
    assert "Short video on Kuaishou." in text and "views 0, shares 0" in text


@pytest.mark.parametrize("language", sorted(TEMPLATES))
def test_every_placeholder_but_the_graph_is_a_seed_field(language):
    placeholders = {name for _, name, _, _ in string.Formatter().parse(TEMPLATES[language]) if name}
    assert placeholders - {"graph"} <= set(SEED_FIELDS)
    assert set(COUNT_COLUMNS) <= placeholders


def test_parse_level():
    assert parse_level(" 7") == 7.0
    assert parse_level("level 3.5 maybe") == 3.5
    assert parse_level("no idea") is None
    assert torch.tensor(parse_level("9")).item() == 9.0


def test_without_graph_tokens_the_graph_line_is_left_out(tokenizer, make_batch):
    fields = make_batch(num_seeds=1).seed_fields
    prompts = PromptBuilder(tokenizer, "en", 400, num_graph_tokens=0).encode(fields, with_answer=True)
    golden = GOLDEN_EN.replace(
        "Propagation graph: <|graph_start|><|graph_pad|><|graph_pad|><|graph_end|>\n", ""
    )
    assert rendered(tokenizer, prompts, 0) == golden


def test_prompts_start_with_bos_when_the_tokenizer_puts_one_before_a_text(tokenizer, make_batch):
    """As Gemma's tokenizer does; the tiny BPE (like SmolLM2's) puts none, and its prompts start with text."""
    import copy

    from tokenizers import processors

    with_bos = copy.deepcopy(tokenizer)
    with_bos.add_special_tokens({"bos_token": "<|bos|>"})
    bos = with_bos.bos_token_id
    with_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", bos)]
    )
    assert with_bos("a")["input_ids"][0] == bos
    fields = make_batch(num_seeds=2).seed_fields
    plain = PromptBuilder(tokenizer, "en", 400, num_graph_tokens=1).encode(fields, with_answer=True)
    prompts = PromptBuilder(with_bos, "en", 400, num_graph_tokens=1).encode(fields, with_answer=True)
    for row in range(2):
        real = prompts.input_ids[row][prompts.attention_mask[row].bool()]
        assert int(real[0]) == bos and int((real == bos).sum()) == 1
        assert real[1:].tolist() == plain.input_ids[row][plain.attention_mask[row].bool()].tolist()
    # the bos counts in the budget: one token more is needed, and a cut prompt with its answer still fits
    needs = {}
    for name, tok in (("plain", tokenizer), ("bos", with_bos)):
        with pytest.raises(ValueError, match=r"needs \d+ tokens") as error:
            PromptBuilder(tok, "en", 32, num_graph_tokens=1).prompt_ids(fields[0])
        needs[name] = int(str(error.value).split("needs ")[1].split()[0])
    assert needs["bos"] == needs["plain"] + 1
    builder = PromptBuilder(with_bos, "en", needs["bos"] + 3, num_graph_tokens=1)
    cut = builder.prompt_ids(fields[0])
    assert cut[0] == bos and len(cut) + max(len(builder.answer_ids(level)) for level in range(10)) == (
        needs["bos"] + 3
    )


def test_every_level_answer_is_the_same_length_after_a_shared_lead(tokenizer, make_batch):
    """The tokens all ten answers begin with (" " before a digit) end the prompt: the last prompt token is
    the one that predicts the level, and each answer is its level's own token and eos."""
    builder = PromptBuilder(tokenizer, "en", 400, num_graph_tokens=1)
    answers = [builder.answer_ids(level) for level in range(10)]
    assert {len(ids) for ids in answers} == {2} and len({ids[0] for ids in answers}) == 10
    assert all(ids[-1] == tokenizer.eos_token_id for ids in answers)
    fields = make_batch(num_seeds=1).seed_fields
    prompt = builder.prompt_ids(fields[0])
    assert tokenizer.decode(prompt).endswith("Answer: ")
    assert tokenizer.decode(prompt + answers[7]) == tokenizer.decode(prompt) + "7" + tokenizer.eos_token


@pytest.mark.parametrize("language", ["en", "zh"])
def test_template_words_are_what_prompts_hold_besides_the_fields(language):
    words = template_words(language)
    assert "Question" in words[0] if language == "en" else "问题" in words[0]
    assert all(word.strip() for word in words) and "{" not in "".join(words)
