import json
from datetime import date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from netgpt.atomic import MARKER, OutputError
from netgpt.config import DataConfig, load_config
from netgpt.data.importer import import_json, import_new_samples
from netgpt.data.schema import COMMENTS_FILE, SAMPLES_FILE, SUMMARY_FILE
from netgpt.data.summary import ImportSummary
from netgpt.data.synthetic import write_synthetic
from netgpt.data.tables import read_comments, read_samples
from netgpt.data.validate import COUNT_FIELDS, DataError


def test_imports_the_released_shape(example_path, tmp_path):
    summary = import_json(example_path, tmp_path / "tables", DataConfig(), progress=False)
    samples = read_samples(tmp_path / "tables").to_pylist()
    assert [row["sample_id"] for row in samples] == [0, 1, 2, 3, 4]
    first = samples[0]
    assert first["video_id"] == "www.example-douyin.test/1000000000000000001"
    assert samples[3]["video_id"] == "www.example-bilibili.test/BV1xx000000001"
    assert first["platform"] == "抖音" and first["topic"] == "冬日 夜景" and first["author_id"] == "5550001"
    assert first["post_time"] == datetime(2024, 12, 1, 19, 5, 11)
    assert first["crawl_date"] == date(2024, 12, 2)
    assert first["duration_s"] == 26.0 and samples[3]["duration_s"] == 181.5
    assert (first["fans"], first["likes"], first["views"], first["shares"], first["collects"]) == (
        1204,
        35,
        0,
        3,
        5,
    )
    assert first["comment_count"] == 6 and first["level"] == 4 and first["sentiment"] == "非敏感"
    assert first["title"] == "城市的冬夜有多美？#航拍 #夜景"
    assert [row["history_ids"] for row in samples] == [[], [0], [0, 1], [], [3]]
    assert [row["is_final_state"] for row in samples] == [False, False, True, False, True]
    # both videos posted before 2024-12-20 - 3 days: train, final states in no split
    assert [row["split"] for row in samples] == ["train", "train", "final", "train", "final"]
    comments = read_comments(tmp_path / "tables").to_pylist()
    assert [(c["sample_id"], c["comment_id"]) for c in comments] == [
        (0, "a1"),
        (0, "a2"),
        (1, "a3"),
        (3, "b1"),
    ]
    assert comments[0]["time"] == datetime(2024, 12, 1, 20, 11, 2) and comments[0]["region"] == "浙江"
    assert comments[0]["text"] == "太美了！" and comments[0]["commenter_id"] == "7770001"
    assert summary.samples == 5 and summary.videos == 2 and summary.comments == 4
    assert summary.platforms == {"抖音": {"samples": 3, "videos": 1}, "哔哩哔哩": {"samples": 2, "videos": 1}}
    assert summary.video_levels["4"] == 1 and summary.video_levels["3"] == 1
    assert summary.splits == {"train": 3, "val": 0, "test": 0, "final": 2}
    assert summary.anomalies["zero_views_抖音"] == 3
    assert ImportSummary.read(tmp_path / "tables") == summary


def test_anomalies_are_counted_not_rejected(example, write_json, tmp_path):
    example["1"]["当前点赞量"] = 30  # fewer than at the first crawl (35)
    example["2"]["影响力等级"] = 5  # the video's states disagree on the label
    example["4"]["历史状态"] = []  # the second state forgets its first
    example["3"]["评论"]["0"]["评论时间"] = "3天前"
    summary = import_json(write_json(example), tmp_path / "t", DataConfig(), progress=False)
    assert summary.anomalies["count_decrease_likes"] == 1
    assert summary.anomaly_examples["count_decrease_likes"] == [1]
    assert summary.anomalies["label_differs_between_states"] == 1
    assert summary.anomalies["history_incomplete"] == 1 and summary.anomaly_examples[
        "history_incomplete"
    ] == [4]
    assert summary.anomalies["comment_time_unparsed"] == 1
    assert read_comments(tmp_path / "t").column("time").to_pylist()[3] is None


def test_splits_follow_the_config(example, write_json, tmp_path):
    example["3"]["发布时间"] = example["4"]["发布时间"] = "2024-12-21 08:00:00"
    example["3"]["当前时间"], example["4"]["当前时间"] = "2024-12-22", "2025-01-05"
    path = write_json(example)
    import_json(path, tmp_path / "a", DataConfig(split_date="2024-12-20", val_days=20), progress=False)
    split = read_samples(tmp_path / "a", ["split"]).column("split").to_pylist()
    assert split == ["val", "val", "final", "test", "final"]
    import_json(path, tmp_path / "b", DataConfig(split_date="2024-12-25", val_days=1), progress=False)
    read_split = read_samples(tmp_path / "b", ["split"]).column("split").to_pylist()
    assert read_split == ["train", "train", "final", "train", "final"]


def test_synthetic_round_trip_preserves_counts_labels_and_comments(tmp_path):
    raw = write_synthetic(tmp_path / "s.json", videos=150, seed=11)
    released = json.loads(raw.read_text(encoding="utf-8"))
    summary = import_json(raw, tmp_path / "t", DataConfig(), progress=False)
    rows = read_samples(tmp_path / "t").to_pylist()
    assert summary.samples == len(rows) == len(released) and summary.videos == 150
    for row in rows:
        sample = released[str(row["sample_id"])]
        assert row["level"] == sample["影响力等级"] and row["url"] == sample["url"]
        assert row["history_ids"] == sample["历史状态"]
        for field, column in COUNT_FIELDS.items():
            assert row[column] == sample[field]
        assert row["post_time"] == datetime.fromisoformat(sample["发布时间"])
    assert summary.comments == sum(len(s["评论"]) for s in released.values())
    assert read_comments(tmp_path / "t").num_rows == summary.comments
    finals = [row for row in rows if row["is_final_state"]]
    assert len(finals) == 150 and all(row["split"] == "final" for row in finals)
    assert {row["split"] for row in rows} == {"train", "val", "test", "final"}
    last_train = date(2024, 12, 20)
    for row in rows:
        posted = row["post_time"].date()
        if row["split"] == "test":
            assert posted > last_train
        elif row["split"] in ("train", "val"):
            assert posted <= last_train and (row["split"] == "val") == (posted > date(2024, 12, 17))


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failed_import_leaves_the_previous_output_intact(example_path, example, write_json, tmp_path):
    out = tmp_path / "tables"
    import_json(example_path, out, DataConfig(), progress=False)
    before = _listing(out)
    example["4"]["影响力等级"] = 12  # fails late: the last sample
    with pytest.raises(DataError):
        import_json(write_json(example), out, DataConfig(), progress=False)
    assert _listing(out) == before
    path = write_json(example)
    path.write_bytes(path.read_bytes()[:-40])  # truncated
    with pytest.raises(DataError):
        import_json(path, out, DataConfig(), progress=False)
    assert _listing(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tables", "xs.json"]  # no temporary folder left


def test_a_new_import_replaces_the_previous_output_whole(example_path, tmp_path):
    out = tmp_path / "tables"
    config = load_config("demo")
    import_json(example_path, out, config.data, progress=False, config=config)
    (out / "stale.txt").write_text("left in the previous output")
    import_json(example_path, out, config.data, progress=False, config=config)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [COMMENTS_FILE, SAMPLES_FILE, SUMMARY_FILE, "config.yaml", MARKER]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tables"]


def test_an_output_folder_of_other_files_is_refused_and_kept(example_path, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="precious: refusing to replace a folder that netgpt did not write"):
        import_json(example_path, precious, DataConfig(), progress=False)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_missing_input_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        import_json(tmp_path / "nope.json", tmp_path / "t", DataConfig(), progress=False)


def test_new_samples_may_lack_the_level_which_stays_null(example, write_json, tmp_path):
    del example["1"]["影响力等级"]
    path = write_json(example)
    with pytest.raises(DataError, match=r"sample 1: field '影响力等级': missing key"):
        import_json(path, tmp_path / "tables", DataConfig(), progress=False)
    name, count = import_new_samples(path, tmp_path / "new", DataConfig(), progress=False)
    samples = pq.read_table(tmp_path / "new" / "samples.parquet").to_pydict()
    assert (name, count) == (str(path), len(example))
    levels = dict(zip(samples["sample_id"], samples["level"], strict=True))
    assert levels[1] is None
    assert levels[0] == example["0"]["影响力等级"]


def test_new_samples_keep_every_other_rule(example, write_json, tmp_path):
    example["2"]["影响力等级"] = 10
    with pytest.raises(DataError, match=r"sample 2: field '影响力等级': expected a level in 0-9"):
        import_new_samples(write_json(example), tmp_path / "new", DataConfig(), progress=False)
    assert not (tmp_path / "new").exists()
