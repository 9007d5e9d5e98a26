"""Hashed, USE and transformer text encoders, timestamp encoding, log1p scalars, content vectors.

The transformer encoder is tested with a tiny BERT and a WordPiece tokenizer trained here at runtime (nothing
is downloaded), saved with `save_pretrained` into a temporary folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netgpt.config import TextEncoderConfig
from netgpt.graph import features
from netgpt.graph.features import (
    USE_DIM,
    USE_MAX_CHARS,
    ContentError,
    HashedTextEncoder,
    encode_time,
    load_content,
    log1p_scalar,
    make_text_encoder,
    scan_content,
    text_dim,
    write_content_file,
)
from netgpt.graph.types import NODE_TYPES


def test_hashed_encoder_is_deterministic_normalised_and_similarity_preserving() -> None:
    encoder = HashedTextEncoder(dim=64, ngram_max=3)
    texts = ["今天的热门话题", "今天的热门话题！", "completely different words", ""]
    x = encoder.encode(texts)
    assert x.shape == (4, 64) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x[:3], axis=1), 1.0, atol=1e-5)
    assert not x[3].any()
    assert x[0] @ x[1] > 0.8 > abs(x[0] @ x[2])
    assert np.array_equal(encoder.encode(texts[:2]), x[:2])
    chunked = HashedTextEncoder(dim=64, ngram_max=3)
    assert np.allclose(chunked.encode(texts * 3000)[-4:], x)


@pytest.fixture(scope="module")
def use_encoder():
    return make_text_encoder(TextEncoderConfig(kind="use", batch_size=3))


def test_use_encoder_is_512_d_normalised_and_deterministic(use_encoder) -> None:
    from netgpt.config import load_config
    from netgpt.train.plan import feature_dims_of

    texts = ["今天的热门话题", "a trending music video", "北京新闻", "", "冬至吃饺子 #美食", "音乐", "体育"]
    x = use_encoder.encode(texts)
    assert x.shape == (7, USE_DIM) and x.dtype == np.float32 and np.isfinite(x).all()
    assert use_encoder.dim == USE_DIM == text_dim(TextEncoderConfig(kind="use"))
    assert feature_dims_of(load_config("demo", ["graph.text.kind=use"]), None)["title"] == USE_DIM
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(use_encoder.encode(texts), x)
    # batches of 3 (the fixture's) and one batch of all seven give the same vectors
    whole = make_text_encoder(TextEncoderConfig(kind="use", batch_size=256)).encode(texts)
    assert np.allclose(whole, x, atol=1e-5)
    assert use_encoder.encode([]).shape == (0, USE_DIM)


def test_use_encoder_puts_a_chinese_paraphrase_nearer_than_an_unrelated_sentence(use_encoder) -> None:
    sentence, paraphrase, unrelated = use_encoder.encode(
        [
            "今天我们全家一起包饺子过冬至",
            "冬至这天，我们一家人一起包了饺子",
            "股市今天大幅下跌，投资者损失惨重",
        ]
    )
    # measured: 0.86 and 0.21 (hashed 3-grams in 64 buckets: 0.35 and -0.10)
    assert sentence @ paraphrase > 0.6 and sentence @ unrelated < 0.4


def test_use_encoder_reads_a_text_up_to_its_character_cap(use_encoder) -> None:
    head = "今天的热门话题是冬至吃饺子。" * (USE_MAX_CHARS // 10)
    cut, longer, short = use_encoder.encode([head[:USE_MAX_CHARS], head + "股市大跌", "今天的热门话题"])
    assert np.allclose(cut, longer, atol=1e-6)
    assert not np.allclose(cut, short, atol=1e-3)


def test_time_encoding_is_periodic_and_zero_where_unknown() -> None:
    day = 86_400
    x = encode_time(np.array([0, day, 3 * day // 2, 5]), dim=6, valid=np.array([True, True, True, False]))
    assert x.shape == (4, 6)
    assert np.allclose(x[0, [0, 3]], x[1, [0, 3]], atol=1e-5)
    assert not np.allclose(x[0], x[2])
    assert not x[3].any()
    assert encode_time(np.array([0]), dim=5).shape == (1, 5)


def test_log1p_scalars() -> None:
    assert np.allclose(log1p_scalar(np.array([0, 9, -3]))[:, 0], [0, np.log(10), 0])


VIDEOS = ["www.douyin.com/7440000000000000001", "www.bilibili.com/av113", "www.ixigua.com/744"]
"""Video ids as `prepare` derives them (host/last path segment): each holds a `/`."""


def test_content_vectors_load_by_video_id_in_batches(tmp_path, monkeypatch) -> None:
    vectors = np.arange(9, dtype=np.float32).reshape(3, 3)
    path = str(write_content_file(tmp_path / "content.parquet", VIDEOS, vectors))
    monkeypatch.setattr(features, "CONTENT_BATCH_VALUES", 3)  # one row per batch
    assert scan_content(path, 3) == set(VIDEOS)
    x = load_content([path], [VIDEOS[2], "www.douyin.com/0", VIDEOS[0]], 3)
    assert x.dtype == np.float32 and x.tolist() == [[6, 7, 8], [0, 0, 0], [0, 1, 2]]
    # a variable-length list of doubles is read too
    pq.write_table(pa.table({"video_id": VIDEOS[:1], "vector": [[0.5, 1.5, 2.5]]}), tmp_path / "list.parquet")
    assert load_content([str(tmp_path / "list.parquet")], VIDEOS[:1], 3).tolist() == [[0.5, 1.5, 2.5]]


def test_a_video_in_two_content_files_needs_the_same_vector(tmp_path) -> None:
    first = str(write_content_file(tmp_path / "a.parquet", VIDEOS[:2], np.ones((2, 3))))
    same = str(write_content_file(tmp_path / "b.parquet", VIDEOS[1:], np.ones((2, 3))))
    assert load_content([first, same], VIDEOS, 3).tolist() == [[1, 1, 1]] * 3
    other = str(write_content_file(tmp_path / "c.parquet", VIDEOS[1:2], np.zeros((1, 3))))
    with pytest.raises(
        ContentError, match=r"c.parquet: video_id 'www.bilibili.com/av113': expected the vector"
    ):
        load_content([first, other], VIDEOS, 3)


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (
            VIDEOS[:2],
            [[1.0, 2.0, 3.0], [1.0, 2.0]],
            r"row 1 \(video_id 'www.bilibili.com/av113'\): expected a "
            r"vector of 3 values \(graph.content_dim\), got 2",
        ),
        (VIDEOS, [[0.0] * 3, [0.0] * 3, [0.0, float("nan"), 0.0]], r"row 2 .*: expected finite values"),
        (VIDEOS[:2], [[0.0] * 3, [1.0, None, 0.0]], r"row 1 .*: expected finite values"),
        (VIDEOS[:2], [[0.0] * 3, None], r"row 1 .*: expected a vector of 3 values .*got null"),
        ([VIDEOS[0], None], [[0.0] * 3] * 2, r"row 1: expected a video id, got null"),
        (
            [VIDEOS[0], VIDEOS[1], VIDEOS[0]],
            [[0.0] * 3] * 3,
            r"row 2 \(video_id 'www.douyin.com/7440000000000000001'\):"
            r" expected one vector per video, but row 0 has this video too",
        ),
    ],
)
def test_a_broken_content_file_names_the_file_the_row_and_the_rule(
    tmp_path, monkeypatch, ids, vectors, message
) -> None:
    monkeypatch.setattr(features, "CONTENT_BATCH_VALUES", 3)  # rows counted across batches
    path = tmp_path / "content.parquet"
    pq.write_table(pa.table({"video_id": pa.array(ids, pa.string()), "vector": vectors}), path)
    with pytest.raises(ContentError, match=f"content.parquet: {message}"):
        scan_content(str(path), 3)


def test_a_content_file_of_another_shape_is_refused(tmp_path) -> None:
    path = tmp_path / "content.parquet"
    pq.write_table(pa.table({"video": VIDEOS[:1], "vector": [[0.0] * 3]}), path)
    with pytest.raises(ContentError, match="expected columns 'video_id' .* and 'vector'"):
        scan_content(str(path), 3)
    pq.write_table(pa.table({"video_id": VIDEOS[:1], "vector": [["a", "b", "c"]]}), path)
    with pytest.raises(ContentError, match="column 'vector': expected a list of floats"):
        scan_content(str(path), 3)
    path.write_bytes(b"not parquet")
    with pytest.raises(ContentError, match="not a parquet file"):
        scan_content(str(path), 3)
    with pytest.raises(FileNotFoundError, match="graph.content_file"):
        scan_content(str(tmp_path / "absent.parquet"), 3)


HIDDEN = 32
MAX_POSITIONS = 24
"""Fewer positions than the encoder's own 256-token cap, so a long text must be cut to the model's size."""
WORDS_ZH = ["今天", "热门", "话题", "视频", "评论", "北京", "音乐", "电影", "新闻", "体育", "标题", "作者"]
WORDS_EN = ["video", "topic", "music", "news", "sports", "title", "author", "comment", "today", "trending"]


def save_tiny_bert(folder: Path, dtype: str = "float32") -> Path:
    """A 1-layer BERT (hidden 32) and a WordPiece tokenizer trained on synthetic mixed-language strings."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    rng = np.random.default_rng(0)
    words = WORDS_ZH + WORDS_EN
    corpus = [" ".join(rng.choice(words, size=int(rng.integers(2, 12)))) for _ in range(400)]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    model.to(getattr(torch, dtype)).save_pretrained(folder)
    wrapped.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def transformer_config(path: Path, batch_size: int = 4) -> TextEncoderConfig:
    return TextEncoderConfig(kind="transformer", path=str(path), batch_size=batch_size)


@pytest.fixture(scope="module")
def bert_encoder(bert_dir):
    return make_text_encoder(transformer_config(bert_dir))


def mixed_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = WORDS_ZH + WORDS_EN
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 9)))) for _ in range(n)]


def test_transformer_encoder_width_dtype_and_determinism(bert_dir, bert_encoder) -> None:
    texts = ["今天的热门话题", "a trending music video", "北京 news"]
    x = bert_encoder.encode(texts)
    assert x.shape == (3, HIDDEN) and x.dtype == np.float32
    assert bert_encoder.dim == HIDDEN == text_dim(transformer_config(bert_dir))
    assert np.isfinite(x).all() and not np.allclose(x[0], x[1])
    assert np.array_equal(bert_encoder.encode(texts), x)
    assert bert_encoder.encode([]).shape == (0, HIDDEN)


def test_batching_and_padding_do_not_change_the_vectors(bert_encoder) -> None:
    texts = mixed_texts(11, seed=1)
    lengths = {len(bert_encoder.tokenizer(t)["input_ids"]) for t in texts}
    assert len(lengths) > 2, "texts of one length would not exercise the padding mask"
    assert len(texts) > bert_encoder.batch_size
    batched = bert_encoder.encode(texts)
    alone = np.concatenate([bert_encoder.encode([t]) for t in texts])
    assert np.allclose(batched, alone, atol=1e-5)


def test_empty_and_over_long_texts_are_encoded(bert_encoder) -> None:
    head = "今天 热门 话题 " * 20
    x = bert_encoder.encode(["", head + "music video", head + "北京 新闻 体育", "今天 热门"])
    assert x.shape == (4, HIDDEN) and np.isfinite(x).all()
    assert len(bert_encoder.tokenizer(head)["input_ids"]) > MAX_POSITIONS
    assert np.array_equal(x[1], x[2]), "texts equal in their first MAX_POSITIONS tokens must be cut there"
    assert not np.allclose(x[1], x[3])


def test_vector_is_the_mean_of_the_last_hidden_states(bert_dir, bert_encoder) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    text = "北京 音乐 video today"
    tokenizer = AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    model = AutoModel.from_pretrained(bert_dir, local_files_only=True).eval()
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    expected = hidden.sum(0).numpy() / len(ids)
    assert np.allclose(bert_encoder.encode([text])[0], expected, atol=1e-6)


def test_a_bfloat16_checkpoint_is_encoded_in_float32(tmp_path) -> None:
    import torch
    from transformers import AutoModel

    bf16_dir = save_tiny_bert(tmp_path / "bf16", dtype="bfloat16")
    fp32_dir = tmp_path / "fp32"
    AutoModel.from_pretrained(bf16_dir, local_files_only=True, dtype=torch.float32).save_pretrained(fp32_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(bf16_dir / name, fp32_dir / name)
    texts = mixed_texts(6, seed=2)
    from_bf16 = make_text_encoder(transformer_config(bf16_dir)).encode(texts)
    from_fp32 = make_text_encoder(transformer_config(fp32_dir)).encode(texts)
    assert from_bf16.dtype == np.float32
    assert np.allclose(from_bf16, from_fp32, atol=1e-6)


def test_a_missing_or_incomplete_model_folder_names_the_path(bert_dir, tmp_path) -> None:
    missing = tmp_path / "nowhere"
    for call in (make_text_encoder, text_dim):
        with pytest.raises(FileNotFoundError, match=f"graph.text.path='{missing}'.*config.json"):
            call(transformer_config(missing))
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(bert_dir / "config.json", no_tokenizer)
    shutil.copy(bert_dir / "model.safetensors", no_tokenizer)
    for call in (make_text_encoder, text_dim):
        with pytest.raises(FileNotFoundError, match=f"graph.text.path='{no_tokenizer}': no tokenizer"):
            call(transformer_config(no_tokenizer))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(bert_dir / name, no_weights)
    with pytest.raises(OSError, match=f"graph.text.path='{no_weights}': cannot load"):
        make_text_encoder(transformer_config(no_weights))


def test_a_store_built_with_the_transformer_records_its_width_and_path(
    bert_dir, tables_dir, tmp_path, ray_cluster, graph_config
) -> None:
    from netgpt.graph.build import build_graph

    cfg = graph_config(num_partitions=1, text=transformer_config(bert_dir, batch_size=16))
    build_graph(tables_dir, cfg, tmp_path / "store")
    meta = json.loads((tmp_path / "store" / "meta.json").read_text(encoding="utf-8"))
    extra = {"text": 0, "text+time": cfg.time_dim}
    text_types = {t.name: HIDDEN + extra[t.feature] for t in NODE_TYPES if t.feature in extra}
    assert {name: meta["feature_dims"][name] for name in text_types} == text_types
    assert meta["text_encoder"] == {"kind": "transformer", "dim": HIDDEN, "path": str(bert_dir)}
