"""One test per rejected input: the error names the file, the sample id, the field and the rule."""

import json
import re
from collections.abc import Callable

import pytest

from netgpt.config import DataConfig
from netgpt.data.importer import import_json
from netgpt.data.tables import read_comments, read_samples
from netgpt.data.validate import DataError, video_id_from_url


def _set(sample: str, field: str, value) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data[sample][field] = value

    return mutate


def _delete(sample: str, field: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        del data[sample][field]

    return mutate


CASES = [
    ("missing key", _delete("1", "平台"), "1", "平台", "missing key"),
    (
        "missing comment key",
        lambda d: d["0"]["评论"]["1"].pop("评论内容"),
        "0",
        "评论.1.评论内容",
        "missing key",
    ),
    ("count not an integer", _set("1", "当前点赞量", "142"), "1", "当前点赞量", "expected an integer count"),
    ("count is a float", _set("1", "当前分享量", 11.5), "1", "当前分享量", "expected an integer count"),
    ("count is a bool", _set("1", "当前分享量", True), "1", "当前分享量", "expected an integer count"),
    ("title not a string", _set("3", "标题", 7), "3", "标题", "expected a string"),
    ("duration not a number", _set("3", "视频时长（秒）", "181"), "3", "视频时长（秒）", "expected a number"),
    ("history not a list", _set("4", "历史状态", 3), "4", "历史状态", "expected a list of integer"),
    ("comments not an object", _set("4", "评论", []), "4", "评论", "expected an object of comments"),
    ("negative count", _set("2", "当前收藏量", -1), "2", "当前收藏量", "expected a count >= 0"),
    (
        "negative duration",
        _set("2", "视频时长（秒）", -3),
        "2",
        "视频时长（秒）",
        "expected a duration of 0-",
    ),
    (
        "endless duration",
        _set("2", "视频时长（秒）", 1e308),
        "2",
        "视频时长（秒）",
        "expected a duration of 0-",
    ),
    ("year 0001", _set("1", "发布时间", "0001-12-01 19:05:11"), "1", "发布时间", "in 2000-2100"),
    ("crawl year 9999", _set("1", "当前时间", "9999-12-06"), "1", "当前时间", "in 2000-2100"),
    ("title of 2 M characters", _set("3", "标题", "长" * (2 << 20)), "3", "标题", "expected at most"),
    (
        "nested list",
        _set("4", "历史状态", [[[[[[[[[3]]]]]]]]]),
        "4",
        "历史状态.0.0.0.0.0.0.0",
        "nested deeper",
    ),
    ("level above 9", _set("0", "影响力等级", 10), "0", "影响力等级", "level in 0-9"),
    ("level below 0", _set("0", "影响力等级", -1), "0", "影响力等级", "level in 0-9"),
    ("unknown platform", _set("3", "平台", "YouTube"), "3", "平台", "unknown platform 'YouTube'"),
    ("unknown sentiment", _set("3", "sentiment", "positive"), "3", "sentiment", "unknown sentiment"),
    (
        "malformed post time",
        _set("1", "发布时间", "2024/12/01 19:05"),
        "1",
        "发布时间",
        "YYYY-MM-DD HH:MM:SS",
    ),
    ("impossible post time", _set("1", "发布时间", "2024-13-01 19:05:11"), "1", "发布时间", "YYYY-MM-DD"),
    ("malformed crawl date", _set("2", "当前时间", "16.12.2024"), "2", "当前时间", "a date YYYY-MM-DD"),
    ("crawl before post", _set("0", "当前时间", "2024-11-30"), "0", "当前时间", "before the post time"),
    ("url without id", _set("3", "url", "https://www.bilibili.com/"), "3", "url", "video's id"),
    ("history is itself", _set("2", "历史状态", [0, 2]), "2", "历史状态", "the sample itself"),
    ("history missing", _set("2", "历史状态", [0, 1, 99]), "2", "历史状态", "id 99 does not exist"),
    ("history other video", _set("4", "历史状态", [0]), "4", "历史状态", "id 0 is another video"),
    ("history not earlier", _set("1", "历史状态", [0, 2]), "1", "历史状态", "id 2 was not crawled before"),
    ("sample id not integer", lambda d: d.update({"x1": d.pop("4")}), "x1", None, "non-negative integer"),
    ("sample id of 20 digits", lambda d: d.update({"1" * 20: d.pop("4")}), "1" * 20, None, "(int64)"),
    ("sample not an object", lambda d: d.update({"4": [1, 2]}), "4", None, "expected an object"),
]


@pytest.mark.parametrize(("case", "mutate", "sample", "field", "rule"), CASES, ids=[c[0] for c in CASES])
def test_bad_sample_error_names_file_sample_field_and_rule(
    example, write_json, tmp_path, case, mutate, sample, field, rule
):
    mutate(example)
    path = write_json(example)
    with pytest.raises(DataError) as caught:
        import_json(path, tmp_path / "tables", DataConfig(), progress=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: sample {sample}: ")
    if field is not None:
        assert f"field {field!r}" in message
    assert rule in message
    assert not (tmp_path / "tables").exists()


def test_duplicate_sample_id(example, tmp_path):
    # json.dumps cannot repeat a key: write the object's text with the first sample twice
    from json import dumps

    first = dumps(example["0"], ensure_ascii=False)
    path = tmp_path / "dup.json"
    path.write_text(f'{{"0": {first}, "1": {dumps(example["1"], ensure_ascii=False)}, "0": {first}}}')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: sample 0: duplicate sample id"):
        import_json(path, tmp_path / "tables", DataConfig(), progress=False)


def test_truncated_json_names_the_byte_offset_at_the_end(example, write_json, tmp_path):
    path = write_json(example)
    text = path.read_bytes()
    path.write_bytes(text[:3000])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: invalid or truncated JSON at byte 3000 "):
        import_json(path, tmp_path / "tables", DataConfig(), progress=False)


@pytest.mark.parametrize("padding", [0, 200_000])
def test_invalid_json_names_the_byte_of_the_error(example, write_json, tmp_path, padding):
    example["0"]["描述"] = "x" * padding  # pushes the error past the first 64 KiB read
    path = write_json(example)
    text = path.read_bytes()
    broken = text.index(
        b'"\xe5\xbd\xb1\xe5\x93\x8d\xe5\x8a\x9b\xe7\xad\x89\xe7\xba\xa7": 3'
    )  # 影响力等级 of sample 3
    colon = text.index(b":", broken)
    path.write_bytes(text[:colon] + b";" + text[colon + 1 :])
    with pytest.raises(DataError, match=rf"invalid or truncated JSON at byte {colon} \(after sample 2\)"):
        import_json(path, tmp_path / "tables", DataConfig(), progress=False)


def test_not_an_object_of_samples(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(DataError, match="no samples: expected one JSON object keyed by sample id"):
        import_json(path, tmp_path / "tables", DataConfig(), progress=False)


def test_video_id_is_the_host_and_the_last_path_segment():
    assert video_id_from_url("https://www.douyin.com/video/7440?from=share#x") == "www.douyin.com/7440"
    assert video_id_from_url("https://www.toutiao.com/video/7441/") == "www.toutiao.com/7441"
    assert video_id_from_url("https://www.toutiao.com/video/7440") != video_id_from_url(
        "https://www.douyin.com/video/7440"
    )
    with pytest.raises(ValueError):
        video_id_from_url("https://www.bilibili.com")


# ---- what real records of the release look like: accepted, one test per variation


def _import(example: dict, write_json, tmp_path, **data_cfg) -> tuple:
    summary = import_json(write_json(example), tmp_path / "tables", DataConfig(**data_cfg), progress=False)
    return (
        summary,
        read_samples(tmp_path / "tables").to_pylist(),
        read_comments(tmp_path / "tables").to_pylist(),
    )


def test_missing_sentiment_is_null_and_counted_per_platform(example, write_json, tmp_path):
    for key in ("0", "1", "3"):
        del example[key]["sentiment"]
    summary, samples, _ = _import(example, write_json, tmp_path)
    assert [row["sentiment"] for row in samples] == [None, None, "非敏感", None, "中性"]
    assert summary.missing_keys == {"sentiment": {"抖音": 2, "哔哩哔哩": 1}}


def test_comment_without_short_id_or_commenter_is_kept_with_nulls(example, write_json, tmp_path):
    del example["0"]["评论"]["1"]["short_id"]
    del example["1"]["评论"]["0"]["评论用户ID"]
    summary, _, comments = _import(example, write_json, tmp_path)
    assert [c["comment_id"] for c in comments] == ["a1", None, "a3", "b1"]
    assert comments[1]["text"] == "这是哪里拍的？" and comments[2]["commenter_id"] is None
    assert summary.missing_keys == {"评论.short_id": {"抖音": 1}, "评论.评论用户ID": {"抖音": 1}}


def test_empty_region_is_an_empty_string_not_a_missing_key(example, write_json, tmp_path):
    example["0"]["评论"]["0"]["IP地址"] = ""
    summary, _, comments = _import(example, write_json, tmp_path)
    assert comments[0]["region"] == "" and summary.missing_keys == {}


def test_empty_title_and_description_are_valid_text(example, write_json, tmp_path):
    example["3"]["标题"] = example["4"]["标题"] = ""
    example["4"]["描述"] = ""
    _, samples, _ = _import(example, write_json, tmp_path)
    assert [row["title"] for row in samples[3:]] == ["", ""] and samples[4]["description"] == ""


def test_fractional_and_integer_durations(example, write_json, tmp_path):
    example["0"]["视频时长（秒）"] = 6.293
    _, samples, _ = _import(example, write_json, tmp_path)
    assert samples[0]["duration_s"] == 6.293 and samples[1]["duration_s"] == 26.0


def test_text_escapes_round_trip(example, write_json, tmp_path):
    text = '第一行\n第二行\t"引号"\\反斜杠'
    example["0"]["描述"] = text
    example["0"]["评论"]["0"]["评论内容"] = text
    path = write_json(example)
    assert b"\\n" in path.read_bytes() and b'\\"' in path.read_bytes()
    _, samples, comments = _import(example, write_json, tmp_path)
    assert samples[0]["description"] == text and comments[0]["text"] == text


@pytest.mark.parametrize(
    ("url", "video_id"),
    [
        ("https://www.douyin.com/share/video/7441234567890123456", "www.douyin.com/7441234567890123456"),
        ("https://www.ixigua.com/7441234567890123456", "www.ixigua.com/7441234567890123456"),
        ("https://www.bilibili.com/video/av113456789012345", "www.bilibili.com/av113456789012345"),
    ],
)
def test_real_url_shapes_name_their_video(example, write_json, tmp_path, url, video_id):
    example["3"]["url"] = example["4"]["url"] = url
    _, samples, _ = _import(example, write_json, tmp_path)
    assert samples[3]["video_id"] == samples[4]["video_id"] == video_id


def test_three_space_indentation(example, tmp_path):
    path = tmp_path / "indent3.json"
    path.write_text(json.dumps(example, ensure_ascii=False, indent=3), encoding="utf-8")
    summary = import_json(path, tmp_path / "tables", DataConfig(), progress=False)
    assert summary.samples == 5 and summary.comments == 4


def test_unknown_keys_are_counted_and_left_out(example, write_json, tmp_path):
    example["2"]["最终状态"] = True
    example["3"]["最终状态"] = False
    example["0"]["评论"]["0"]["点赞"] = 3
    summary, samples, comments = _import(example, write_json, tmp_path)
    assert summary.unknown_keys == {"最终状态": {"抖音": 1, "哔哩哔哩": 1}, "评论.点赞": {"抖音": 1}}
    assert "最终状态" not in samples[0] and "点赞" not in comments[0]


def test_strict_refuses_an_unknown_key_naming_it(example, write_json, tmp_path):
    example["2"]["点赞"] = 3
    path = write_json(example)
    with pytest.raises(DataError) as caught:
        import_json(path, tmp_path / "tables", DataConfig(strict_keys=True), progress=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: sample 2: field '点赞': unknown key")
    assert not (tmp_path / "tables").exists()


def test_an_integer_beyond_int64_is_refused_at_its_sample(example, write_json, tmp_path):
    """The parser itself refuses it (yajl's integers are int64), at the byte, after the sample before."""
    example["1"]["当前点赞量"] = 10**30
    with pytest.raises(DataError, match=r"invalid or truncated JSON at byte \d+ \(after sample 0\)"):
        import_json(write_json(example), tmp_path / "tables", DataConfig(), progress=False)
