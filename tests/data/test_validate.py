"""One test per rejected input: the error names the file, the sample id, the field and the rule."""

import re
from collections.abc import Callable

import pytest

from netgpt.config import DataConfig
from netgpt.data.importer import import_json
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
    ("unknown key", _set("2", "点赞", 3), "2", "点赞", "unknown key"),
    ("missing comment key", lambda d: d["0"]["评论"]["1"].pop("IP地址"), "0", "评论.1.IP地址", "missing key"),
    ("count not an integer", _set("1", "当前点赞量", "142"), "1", "当前点赞量", "expected an integer count"),
    ("count is a float", _set("1", "当前分享量", 11.5), "1", "当前分享量", "expected an integer count"),
    ("count is a bool", _set("1", "当前分享量", True), "1", "当前分享量", "expected an integer count"),
    ("title not a string", _set("3", "标题", 7), "3", "标题", "expected a string"),
    ("duration not a number", _set("3", "视频时长（秒）", "181"), "3", "视频时长（秒）", "expected a number"),
    ("history not a list", _set("4", "历史状态", 3), "4", "历史状态", "expected a list of integer"),
    ("comments not an object", _set("4", "评论", []), "4", "评论", "expected an object of comments"),
    ("negative count", _set("2", "当前收藏量", -1), "2", "当前收藏量", "expected a count >= 0"),
    ("negative duration", _set("2", "视频时长（秒）", -3), "2", "视频时长（秒）", "expected a duration >= 0"),
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
