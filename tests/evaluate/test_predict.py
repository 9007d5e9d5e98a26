"""`netgpt predict` end to end: held-out synthetic samples rated with a tiny saved NetGPT."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from netgpt.cli import main
from netgpt.config import load_config
from netgpt.data.validate import DataError
from netgpt.evaluate.predict import OUTPUT_SCHEMA, predict

UNKNOWN_URL = "https://www.douyin.com/video/7999999999999999999"


def overrides(world, fanouts: str) -> list[str]:
    cfg = world.config
    return [
        f"data.tables_dir={cfg.data.tables_dir}",
        f"graph.store_dir={cfg.graph.store_dir}",
        f"graph.fanouts={fanouts}",
        f"model.num_layers={fanouts.count(',') + 1}",  # the config's own rule: one layer per hop
    ]


def mixed_input(world, path) -> dict:
    """The held-out samples renumbered onto ids the store also has (earlier-state ids among them
    remapped), the levels of the last video removed, and a new video of an unknown topic and author."""
    new = world.new
    referenced = {i for record in new.values() for i in record["历史状态"]}
    store_ids = [int(k) for k in world.records if k not in new and int(k) not in referenced]
    rename = {key: str(store_ids[i]) for i, key in enumerate(new)}
    mixed = {}
    for key, record in new.items():
        history = [int(rename[str(i)]) if str(i) in rename else i for i in record["历史状态"]]
        mixed[rename[key]] = {**record, "历史状态": history}
    for key in list(mixed)[-2:]:
        del mixed[key]["影响力等级"]
    first = next(iter(new.values()))
    mixed[str(10**6)] = {
        **{k: v for k, v in first.items() if k != "影响力等级"},
        "url": UNKNOWN_URL,
        "话题": "从未出现的话题",
        "发布用户ID": "no-such-author",
        "历史状态": [],
    }
    path.write_text(json.dumps(mixed, ensure_ascii=False), encoding="utf-8")
    return mixed


@pytest.fixture(scope="module")
def cli_run(held_out_world, model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    records = mixed_input(held_out_world, folder / "mixed.json")
    out = folder / "out" / "ratings.parquet"
    argv = ["predict", "--model", str(model_dir), "--input", str(folder / "mixed.json"), "--out", str(out)]
    argv += [
        "--batch-size",
        "2",
        "--chunk-size",
        "5",
        "--content",
        str(held_out_world.new_content),
        "--config",
        "demo",
        *overrides(held_out_world, "[3,3]"),
    ]
    return records, out, main(argv)


def test_cli_writes_one_row_per_input_sample_in_input_order(cli_run, capsys) -> None:
    records, out, code = cli_run
    assert code == 0
    table = pq.read_table(out)
    assert table.schema.names == OUTPUT_SCHEMA.names
    assert table["sample_id"].to_pylist() == [int(k) for k in records]
    assert table["url"].to_pylist() == [r["url"] for r in records.values()]
    assert all(
        0 <= level <= 9 for level in table["prompt_level"].to_pylist() + table["graph_level"].to_pylist()
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["ratings.parquet"]  # no temporary left


def test_unknown_topic_and_author_are_rated_and_flagged(cli_run) -> None:
    _, out, _ = cli_run
    rows = pq.read_table(out).to_pylist()
    unknown = [row for row in rows if row["url"] == UNKNOWN_URL]
    assert len(unknown) == 1 and unknown[0]["unknown_topic"] and unknown[0]["unknown_author"]
    assert math.isfinite(unknown[0]["prompt_score"]) and math.isfinite(unknown[0]["graph_score"])
    assert not any(row["unknown_topic"] or row["unknown_author"] for row in rows if row["url"] != UNKNOWN_URL)


def test_absent_level_is_null_and_present_level_is_reported(cli_run) -> None:
    records, out, _ = cli_run
    truth = pq.read_table(out)["true_level"].to_pylist()
    assert truth == [record.get("影响力等级") for record in records.values()]
    assert truth.count(None) == 3  # the last video's two states and the unknown video


def test_colliding_ids_rate_as_the_samples_they_are(held_out_world, model_dir, tmp_path) -> None:
    """With full fan-out and one sample per batch a rating depends on the sample's graph only: the held-out
    samples renumbered onto the store's ids (next to unlabelled and unknown ones, in chunks of 3) rate as
    they did."""
    config = load_config("demo", overrides(held_out_world, "[-1,-1]"))
    plain = predict(model_dir, held_out_world.new_json, tmp_path / "plain.parquet", config, 1, progress=False)
    mixed = mixed_input(held_out_world, tmp_path / "mixed.json")
    mixed_out = tmp_path / "mixed.parquet"
    summary = predict(model_dir, tmp_path / "mixed.json", mixed_out, config, 1, chunk_size=3, progress=False)
    assert plain["labelled"] == plain["samples"] == len(held_out_world.new)
    assert (summary["samples"], summary["labelled"], summary["unknown_topic_and_author"]) == (
        len(mixed),
        6,
        1,
    )
    before = pq.read_table(tmp_path / "plain.parquet").to_pydict()
    after = pq.read_table(mixed_out).slice(0, len(held_out_world.new)).to_pydict()
    assert after["sample_id"] == [int(k) for k in list(mixed)[:-1]]
    assert before["sample_id"] == [int(k) for k in held_out_world.new]
    for column in ("prompt_score", "graph_score", "answer_level"):
        assert after[column] == before[column]


def test_new_videos_content_vectors_are_read_and_those_without_counted(
    held_out_world, model_dir, tmp_path
) -> None:
    config = load_config("demo", overrides(held_out_world, "[-1,-1]"))
    new_json = held_out_world.new_json
    plain = predict(model_dir, new_json, tmp_path / "plain.parquet", config, 1, progress=False)
    given = predict(
        model_dir,
        new_json,
        tmp_path / "given.parquet",
        config,
        1,
        progress=False,
        content_file=str(held_out_world.new_content),
    )
    assert (plain["videos_without_content_vector"], given["videos_without_content_vector"]) == (1, 0)
    # the wholly held-out video (its two states, last in the input) gained a vector: it is rated otherwise
    before = pq.read_table(tmp_path / "plain.parquet")["graph_score"].to_pylist()
    after = pq.read_table(tmp_path / "given.parquet")["graph_score"].to_pylist()
    assert before[-2] != after[-2] and before[-1] != after[-1]


def test_bad_input_names_file_sample_and_field_and_writes_nothing(
    held_out_world, model_dir, tmp_path, capsys
) -> None:
    records = dict(held_out_world.new)
    key = list(records)[2]
    records[key] = {**records[key], "当前点赞量": -5}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out" / "ratings.parquet"
    config = load_config("demo", overrides(held_out_world, "[3,3]"))
    with pytest.raises(DataError) as caught:
        predict(model_dir, path, out, config, progress=False)
    assert str(caught.value).startswith(f"{path}: sample {key}: field '当前点赞量': expected a count >= 0")
    argv = ["predict", "--model", str(model_dir), "--input", str(path), "--out", str(out)]
    capsys.readouterr()
    assert main([*argv, *overrides(held_out_world, "[3,3]")]) == 5  # bad data
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"netgpt predict: error: {caught.value}"
    assert "Traceback" not in err
    assert list(out.parent.iterdir()) == []


def test_fanouts_must_match_the_model_layers(held_out_world, model_dir, tmp_path) -> None:
    config = load_config("demo", overrides(held_out_world, "[3]"))
    with pytest.raises(ValueError, match="2 message-passing layers, graph.fanouts samples 1 hops"):
        predict(model_dir, held_out_world.new_json, tmp_path / "out" / "r.parquet", config, progress=False)
    assert list((tmp_path / "out").iterdir()) == []
