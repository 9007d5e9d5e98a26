import json
import re
from datetime import date, datetime

import pytest

from netgpt.data.levels import influence_level
from netgpt.data.schema import PLATFORMS
from netgpt.data.synthetic import (
    COMMENTS_PER_SAMPLE,
    MIN_TOPICS,
    oracle,
    topic_count,
    write_synthetic,
)
from netgpt.data.validate import (
    COMMENT_KEYS,
    REQUIRED_COMMENT_KEYS,
    REQUIRED_SAMPLE_KEYS,
    SAMPLE_KEYS,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[bytes, dict]:
    path = write_synthetic(tmp_path_factory.mktemp("synth") / "s.json", videos=400, seed=3)
    raw = path.read_bytes()
    return raw, json.loads(raw)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, synthetic):
    again = write_synthetic(tmp_path / "again.json", videos=400, seed=3).read_bytes()
    assert again == synthetic[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json"]  # no temporary file left
    assert write_synthetic(tmp_path / "other.json", videos=400, seed=4).read_bytes() != synthetic[0]


def test_released_shape_keys_ids_and_three_space_indentation(synthetic):
    raw, data = synthetic
    assert raw.startswith(b'{\n   "0": {\n      "url": ')
    assert list(data) == [str(i) for i in range(len(data))]
    for sample in data.values():
        assert REQUIRED_SAMPLE_KEYS <= set(sample) <= SAMPLE_KEYS
        assert list(sample["评论"]) == [str(i) for i in range(len(sample["评论"]))]
        for comment in sample["评论"].values():
            assert REQUIRED_COMMENT_KEYS <= set(comment) <= COMMENT_KEYS


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def test_variations_of_the_real_records(synthetic):
    """What real records show, at about their rates, so every test on synthetic data meets it too."""
    _, data = synthetic
    samples = list(data.values())
    comments = [c for s in samples for c in s["评论"].values()]
    finals = [states[-1][1] for states in _videos(data)]
    assert 0.22 <= _share(["sentiment" not in s for s in samples]) <= 0.34
    assert 0.05 <= _share(["short_id" not in c for c in comments]) <= 0.15
    assert 0.10 <= _share([c["IP地址"] == "" for c in comments]) <= 0.20
    assert 0.14 <= _share([s["标题"] == "" for s in finals]) <= 0.26
    assert 0.07 <= _share([isinstance(s["视频时长（秒）"], float) for s in finals]) <= 0.17
    assert all(isinstance(s["视频时长（秒）"], int | float) for s in samples)
    for escape in ("\n", "\t", '"'):
        assert any(escape in s["描述"] for s in samples)
    urls = {s["平台"]: s["url"] for s in finals}
    assert re.fullmatch(r"https://www\.douyin\.com/share/video/\d+", urls["抖音"])
    assert re.fullmatch(r"https://www\.ixigua\.com/\d{19}", urls["西瓜"])
    assert re.fullmatch(r"https://www\.bilibili\.com/video/av\d+", urls["哔哩哔哩"])


def _videos(data: dict) -> list[list[tuple[int, dict]]]:
    videos: list[list[tuple[int, dict]]] = []
    for key, sample in data.items():
        if videos and videos[-1][0][1]["url"] == sample["url"]:
            videos[-1].append((int(key), sample))
        else:
            videos.append([(int(key), sample)])
    return videos


def test_states_contiguous_cumulative_and_timed_like_xs_video(synthetic):
    _, data = synthetic
    videos = _videos(data)
    assert len(videos) == 400 == len({v[0][1]["url"] for v in videos})  # contiguous: each url one run
    decreases = 0
    for states in videos:
        assert 2 <= len(states) <= 5
        post = datetime.fromisoformat(states[0][1]["发布时间"])
        assert datetime(2024, 11, 25) <= post < datetime(2025, 1, 3)
        days = [(date.fromisoformat(s["当前时间"]) - post.date()).days for _, s in states]
        assert days[0] >= 0 and 14 <= days[-1] <= 16
        assert all(1 <= b - a <= 11 for a, b in zip(days, days[1:], strict=False))
        for i, (_, sample) in enumerate(states):
            assert sample["历史状态"] == [sid for sid, _ in states[:i]]
            assert sample["影响力等级"] == states[0][1]["影响力等级"]
        for key in ("当前点赞量", "当前分享量", "当前收藏量", "当前评论量", "当前播放量", "当前粉丝量"):
            values = [s[key] for _, s in states]
            decreases += sum(b < a for a, b in zip(values, values[1:], strict=False))
        final = states[-1][1]
        assert final["影响力等级"] == influence_level(
            final["平台"],
            final["当前点赞量"],
            final["当前分享量"],
            final["当前收藏量"],
            final["当前评论量"],
        )
    assert decreases <= 0.05 * len(videos)  # rare deleted likes, nothing else


def test_platform_quirks_topics_and_authors(synthetic):
    _, data = synthetic
    finals = [states[-1][1] for states in _videos(data)]
    by_platform = {p: [s for s in finals if s["平台"] == p] for p in PLATFORMS}
    assert all(by_platform.values())
    assert all(s["当前播放量"] == 0 for s in by_platform["抖音"])
    xigua = by_platform["西瓜"]
    assert sum(s["当前分享量"] == 0 and s["当前收藏量"] == 0 for s in xigua) >= 0.7 * len(xigua)
    bili = by_platform["哔哩哔哩"]
    assert sum(s["当前评论量"] == 0 for s in bili) >= 0.7 * len(bili)
    topics = {}
    for s in finals:
        topics.setdefault(s["话题"], set()).add(s["平台"])
    # 30 topics drawn; with niche authors a few of the rarest may get no video among 400
    assert 25 <= len(topics) <= topic_count(400) == MIN_TOPICS and max(len(p) for p in topics.values()) >= 3
    authors = {}
    for s in finals:
        authors[s["发布用户ID"]] = authors.get(s["发布用户ID"], 0) + 1
    assert max(authors.values()) >= 5
    assert any("#" in s["标题"] for s in finals)


def test_planted_signal_title_words_and_author_move_levels(synthetic):
    _, data = synthetic
    finals = [states[-1][1] for states in _videos(data)]
    hot = [s["影响力等级"] for s in finals if "【震撼】" in s["标题"] or "【独家】" in s["标题"]]
    cold = [s["影响力等级"] for s in finals if "【日常】" in s["标题"] or "【记录】" in s["标题"]]
    assert sum(hot) / len(hot) > sum(cold) / len(cold) + 0.3


def _top_two_topic_share(finals: list[dict], min_videos: int) -> float:
    """Over authors with `min_videos`+ videos: the share of their videos in their two commonest topics."""
    by_author: dict[str, list[str]] = {}
    for s in finals:
        by_author.setdefault(s["发布用户ID"], []).append(s["话题"])
    in_top, total = 0, 0
    for topics in by_author.values():
        if len(topics) >= min_videos:
            counts = sorted((topics.count(t) for t in set(topics)), reverse=True)
            in_top += sum(counts[:2])
            total += len(topics)
    assert total >= 100, "too few prolific authors to measure"
    return in_top / total


def test_authors_post_mostly_in_their_home_topics(tmp_path, synthetic):
    niche = _top_two_topic_share([states[-1][1] for states in _videos(synthetic[1])], min_videos=5)
    raw = write_synthetic(tmp_path / "mixed.json", videos=400, seed=3, home_topic_share=0.0).read_text()
    mixed = _top_two_topic_share([states[-1][1] for states in _videos(json.loads(raw))], min_videos=5)
    assert niche >= 0.85 and mixed <= 0.6


def test_topic_count_and_comment_volume_follow_the_release(synthetic):
    assert topic_count(117_720) == 535 and topic_count(30_000) == 136 and topic_count(300) == MIN_TOPICS
    assert topic_count(2) == 1 and topic_count(60) == 20
    _, data = synthetic
    per_sample = sum(len(s["评论"]) for s in data.values()) / len(data)
    assert abs(per_sample - COMMENTS_PER_SAMPLE) < 0.15 * COMMENTS_PER_SAMPLE


def test_levels_are_skewed_low_as_in_the_release(synthetic):
    finals = [states[-1][1] for states in _videos(synthetic[1])]
    share = [sum(s["影响力等级"] == level for s in finals) / len(finals) for level in range(10)]
    assert 0.01 <= share[0] <= 0.12 and max(share) == max(share[1:4])
    assert 0.70 <= sum(share[1:5]) <= 0.92 and 0.04 <= sum(share[5:]) <= 0.16
    assert all(s <= 0.08 for s in share[5:]) and share[9] <= 0.01


def test_oracle_counts_the_files_labels_and_beats_what_the_file_shows(synthetic):
    """The oracle walks the same draws as the file (same labels, same rated samples), and knowing more than
    the file shows it beats simple predictors read off the file: the majority level, and the level of the
    sample's own counts (what the level would be if nothing more came)."""
    _, data = synthetic
    found = oracle(400, 3)
    videos = _videos(data)
    assert found.levels == tuple(sum(v[0][1]["影响力等级"] == level for v in videos) for level in range(10))
    rated = [(s, states[-1][1]["影响力等级"]) for states in videos for _, s in states[:-1]]
    assert found.samples == len(rated)
    majority = max(found.levels) / len(videos)
    as_is = sum(
        influence_level(s["平台"], s["当前点赞量"], s["当前分享量"], s["当前收藏量"], s["当前评论量"])
        == level
        for s, level in rated
    ) / len(rated)
    assert majority + 0.2 < found.latent < found.latent_and_likes
    assert as_is < found.latent_and_likes <= 1.0
