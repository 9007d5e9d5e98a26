"""Hashed text encoder, timestamp encoding, log1p scalars, content vectors."""

from __future__ import annotations

import numpy as np
import pytest

from netgpt.graph.features import HashedTextEncoder, encode_time, load_content, log1p_scalar


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


def test_time_encoding_is_periodic_and_zero_where_unknown() -> None:
    day = 86_400
    x = encode_time(np.array([0, day, 3 * day // 2, 5]), dim=6, valid=np.array([True, True, True, False]))
    assert x.shape == (4, 6)
    assert np.allclose(x[0, [0, 3]], x[1, [0, 3]], atol=1e-5)
    assert not np.allclose(x[0], x[2])
    assert not x[3].any()
    assert encode_time(np.array([0]), dim=5).shape == (1, 5)


def test_log1p_scalars_and_content_vectors(tmp_path) -> None:
    assert np.allclose(log1p_scalar(np.array([0, 9, -3]))[:, 0], [0, np.log(10), 0])
    np.save(tmp_path / "v1.npy", np.arange(3, dtype=np.float64))
    x = load_content(str(tmp_path), ["v1", "v2", "v1"], 3, {"v1"})
    assert x.tolist() == [[0, 1, 2], [0, 0, 0], [0, 1, 2]]
    np.save(tmp_path / "v3.npy", np.zeros(4))
    with pytest.raises(ValueError, match=r"v3.npy: expected a content vector of shape \(3,\)"):
        load_content(str(tmp_path), ["v3"], 3, {"v3"})
