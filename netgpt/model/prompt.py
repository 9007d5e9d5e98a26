"""The prompt: one template per language, graph tokens, the answer, truncation to a token budget, padding.

The prompt names the platform, topic, title, description, post and crawl time, duration and the current
counts, holds the graph tokens `<|graph_start|>` `<|graph_pad|>`×k `<|graph_end|>`, and asks for the level;
the answer is the level as text followed by eos. With k = 0 (the LLM-alone baseline) the graph's line is
left out and the prompt is otherwise the same.

Choices made here:
- A count that is zero on a platform that hides it (docs/data.md#the-keys-of-a-record: Douyin shows no views,
  Xigua rarely shares or collects, Bilibili rarely comment counts) is written "not shown" (未显示): zero there
  means unknown.
- Pieces of the template and each field are tokenized separately and concatenated, so a long field can be cut
  to an exact token count and the graph token ids are placed exactly; training and generation use the same
  ids because the answer's tokens are always reserved in the budget.
- The tokens every level's answer begins with (a tokenizer that splits digits writes " 7" as " " then "7")
  end the prompt instead: the answer is then the level's own token(s), so the last prompt token is the one
  whose next-token distribution is the level, and the regression head reads that very hidden state.
- Rows are padded on the left, so generation appends to every row at the same position and the last prompt
  token of a prompt without answer is the last column. Position ids are derived from the attention mask.
- No chat template: the LLM is fine-tuned on this plain template.
- A prompt starts with the tokenizer's bos token when the tokenizer itself puts one before a text (Gemma's
  does: Gemma models were trained with every sequence starting with `<bos>` and read text poorly without
  it); pieces are tokenized without special tokens, so the bos is added here, once.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from netgpt.data.schema import COUNT_COLUMNS, NUM_LEVELS
from netgpt.graph.seeds import SeedFields
from netgpt.model.tokenizer import GRAPH_END, GRAPH_PAD, GRAPH_START, add_graph_tokens

TEMPLATES = {
    "en": (
        "Short video on {platform}.\n"
        "Topic: {topic}\n"
        "Title: {title}\n"
        "Description: {description}\n"
        "Posted: {post_time}; observed: {crawl_date}; duration: {duration_s} s\n"
        "Counts so far: fans {fans}, likes {likes}, views {views}, shares {shares}, collects {collects}, "
        "comments {comment_count}\n"
        "Propagation graph: {graph}\n"
        "Question: on a scale from 0 (lowest) to 9 (highest), what will this video's propagation influence "
        "level be two weeks after it was posted?\n"
        "Answer: "
    ),
    "zh": (
        "这是一条发布在{platform}的短视频。\n"
        "话题：{topic}\n"
        "标题：{title}\n"
        "描述：{description}\n"
        "发布时间：{post_time}；观测日期：{crawl_date}；时长：{duration_s}秒\n"
        "当前数据：粉丝{fans}，点赞{likes}，播放{views}，分享{shares}，收藏{collects}，评论{comment_count}\n"
        "传播图：{graph}\n"
        "问题：按0（最低）到9（最高）的等级，这条视频发布两周后的传播影响力等级是多少？\n"
        "答案："
    ),
}
"""`{graph}` is where the graph tokens go; the other placeholders are seed-field keys
(docs/graph.md#the-seeds-fields)."""

TRUNCATABLE = ("topic", "title", "description")
"""Long free-text fields, cut (fair share of the budget each) when a prompt would exceed its token budget."""

PLATFORM_NAMES_EN = {
    "抖音": "Douyin",
    "快手": "Kuaishou",
    "西瓜": "Xigua",
    "头条": "Toutiao",
    "哔哩哔哩": "Bilibili",
}

HIDDEN_WHEN_ZERO = {"抖音": ("views",), "西瓜": ("shares", "collects"), "哔哩哔哩": ("comment_count",)}
"""Counts a platform hides or rarely shows: a zero there is written "not shown"."""

NOT_SHOWN = {"en": "not shown", "zh": "未显示"}

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class PromptBatch:
    """Left-padded token ids of B prompts (with or without their answers)."""

    input_ids: torch.Tensor
    """int64 [B, T]."""
    attention_mask: torch.Tensor
    """int64 [B, T]: 0 on padding."""
    labels: torch.Tensor
    """int64 [B, T]: the answer tokens (level text + eos), -100 everywhere else."""
    last_prompt_index: torch.Tensor
    """int64 [B]: column of each row's last prompt token (the one before the answer)."""

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch(*(t.to(device) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.input_ids, self.attention_mask, self.labels, self.last_prompt_index)

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted from each row's first real token (left padding does not shift them)."""
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)


def answer_text(level: float | int) -> str:
    """The answer the LLM learns to write: the level as a plain integer."""
    return str(int(level))


def parse_level(text: str) -> float | None:
    """The first number in a generated answer, or None when there is none."""
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


class PromptBuilder:
    """Renders seed fields (`SeedFields`, docs/graph.md#the-seeds-fields) into padded token tensors."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, language: str, max_tokens: int, num_graph_tokens: int
    ) -> None:
        if language not in TEMPLATES:
            raise ValueError(f"prompt language: expected one of {sorted(TEMPLATES)}, got {language!r}")
        if num_graph_tokens < 0:
            raise ValueError(f"num_graph_tokens: expected an integer >= 0, got {num_graph_tokens}")
        self.tokenizer = add_graph_tokens(tokenizer)
        self.language = language
        self.max_tokens = max_tokens
        self.num_graph_tokens = num_graph_tokens
        self.graph_ids = self.tokenizer.convert_tokens_to_ids([GRAPH_START, *[GRAPH_PAD] * num_graph_tokens])
        self.graph_ids.append(self.tokenizer.convert_tokens_to_ids(GRAPH_END))
        self._pieces, self._spaced = _split_template(TEMPLATES[language])
        if (
            num_graph_tokens == 0
        ):  # the graph line's newline ends the line before it; the next piece has its own
            self._pieces = [(text, name) for text, name in self._pieces if name != "graph"]
        self._literal_ids = {text: self._ids(text) for text, _ in self._pieces if text}
        self._answer_prefix = " " if None in self._spaced else ""
        self._answer_lead = _common_prefix(
            [self._ids(self._answer_prefix + answer_text(level)) for level in range(NUM_LEVELS)]
        )
        bos = self.tokenizer.bos_token_id
        self._start_ids = [bos] if bos is not None and self.tokenizer("a")["input_ids"][:1] == [bos] else []
        self._longest_answer = max(len(self.answer_ids(level)) for level in range(NUM_LEVELS))
        self._field_names = list(
            dict.fromkeys([*TRUNCATABLE, *(n for _, n in self._pieces if n is not None and n != "graph")])
        )
        """The template's fields, each once: a prompt tokenizes them in one batch call of the tokenizer
        (a call per field, and the ten answers' lengths at every prompt, were a tenth of an LLM stage's step
        at the demo's sizes)."""

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def answer_ids(self, level: float | int) -> list[int]:
        """The answer's tokens after the prompt (their lead, shared by every level, ends it), then eos."""
        ids = self._ids(self._answer_prefix + answer_text(level))
        lead = len(self._answer_lead)
        if ids[:lead] != self._answer_lead:
            raise ValueError(f"level {level}: its answer does not start with the tokens every level's does")
        return [*ids[lead:], self.tokenizer.eos_token_id]

    def prompt_ids(self, fields: SeedFields) -> list[int]:
        """The prompt of one seed (without answer), cut to the budget that leaves room for the answer."""
        values = self._values(fields)
        texts = [values[name] for name in self._field_names]
        field_ids = dict(
            zip(self._field_names, self.tokenizer(texts, add_special_tokens=False)["input_ids"], strict=True)
        )
        fixed = len(self._start_ids) + len(self._answer_lead)
        fixed += sum(len(self._literal_ids.get(text, [])) for text, _ in self._pieces)
        for _, name in self._pieces:
            if name == "graph":
                fixed += len(self.graph_ids)
            elif name is not None and name not in TRUNCATABLE:
                fixed += len(field_ids[name])
        # The longest answer is reserved whether or not it is appended, so the prompt is the same in both.
        budget = self.max_tokens - fixed - self._longest_answer
        if budget < 0:
            raise ValueError(
                f"sample {fields['sample_id']}: the prompt needs {self.max_tokens - budget} tokens without "
                f"its text fields; expected model.max_prompt_tokens >= that, got {self.max_tokens}"
            )
        limits = _fair_shares({name: len(field_ids[name]) for name in TRUNCATABLE}, budget)
        ids = list(self._start_ids)
        for text, name in self._pieces:
            ids += self._literal_ids.get(text, [])
            if name == "graph":
                ids += self.graph_ids
            elif name in TRUNCATABLE:
                ids += field_ids[name][: limits[name]]
            elif name is not None:
                ids += field_ids[name]
        return ids + self._answer_lead

    def encode(self, seed_fields: list[SeedFields], with_answer: bool) -> PromptBatch:
        rows, label_rows, last = [], [], []
        for fields in seed_fields:
            prompt = self.prompt_ids(fields)
            answer = self.answer_ids(_field(fields, "level")) if with_answer else []
            rows.append(prompt + answer)
            label_rows.append([-100] * len(prompt) + answer)
            last.append(len(prompt) - 1)
        width = max(len(r) for r in rows)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
        labels = torch.tensor([[-100] * (width - len(r)) + r for r in label_rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        last_index = torch.tensor(
            [width - len(r) + i for r, i in zip(rows, last, strict=True)], dtype=torch.long
        )
        return PromptBatch(input_ids, mask, labels, last_index)

    def _values(self, fields: SeedFields) -> dict[str, str]:
        """Every template field as display text; trailing spaces of a literal move into the next field."""
        values = {name: str(_field(fields, name)) for name in TRUNCATABLE}
        platform = str(_field(fields, "platform"))
        values["platform"] = PLATFORM_NAMES_EN.get(platform, platform) if self.language == "en" else platform
        values["post_time"] = str(_field(fields, "post_time"))
        values["crawl_date"] = str(_field(fields, "crawl_date"))
        values["duration_s"] = f"{float(_field(fields, 'duration_s')):.0f}"
        hidden = HIDDEN_WHEN_ZERO.get(platform, ())
        for name in COUNT_COLUMNS:
            count = int(_field(fields, name))
            values[name] = NOT_SHOWN[self.language] if count == 0 and name in hidden else str(count)
        return {name: (" " + text if name in self._spaced else text) for name, text in values.items()}


def _field(fields: SeedFields, name: str):
    if name not in fields:
        raise KeyError(f"seed fields of sample {fields.get('sample_id', '?')}: missing field {name!r}")
    return fields[name]


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    shared = 0
    while all(len(ids) > shared and ids[shared] == sequences[0][shared] for ids in sequences):
        shared += 1
    return sequences[0][:shared]


def template_words(language: str) -> list[str]:
    """The text every prompt of `language` holds besides its fields: the template's literals, the platform
    names and the "not shown" word. A tokenizer trained on the data's text alone never merges them (the
    English template then costs ~380 byte tokens with the demo's BPE, ~160 with them)."""
    literals = "".join(literal for literal, _, _, _ in string.Formatter().parse(TEMPLATES[language]))
    platforms = PLATFORM_NAMES_EN.values() if language == "en" else PLATFORM_NAMES_EN
    return [literals, *(" " + name for name in platforms), " " + NOT_SHOWN[language]]


def _split_template(template: str) -> tuple[list[tuple[str, str | None]], set[str | None]]:
    """(literal text, field name or None) pieces, and the fields (None: the answer) that follow a space.

    A literal's trailing space moves to the start of the field after it, as a byte-level BPE would have
    merged it into the field's first word had the prompt been tokenized whole."""
    pieces, spaced = [], set()
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal.endswith(" ") and name != "graph":
            spaced.add(name)
            literal = literal.rstrip(" ")
        pieces.append((literal, name))
    return pieces, spaced


def _fair_shares(lengths: dict[str, int], budget: int) -> dict[str, int]:
    """Token limits per field: short fields keep everything, long ones share what is left equally."""
    limits = {}
    left, fields = budget, sorted(lengths, key=lengths.get)
    for i, name in enumerate(fields):
        limits[name] = min(lengths[name], left // (len(fields) - i))
        left -= limits[name]
    return limits
