import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from netgpt.config import ConfigError, NetGPTConfig, llm_alone_variant, load_config, save_config


def test_defaults_preset_and_overrides_layer_in_order():
    config = load_config("demo", ["graph.num_partitions=4", "train.stages.0.lr=0.5"])
    assert isinstance(config, NetGPTConfig)
    assert config.graph.num_partitions == 4  # override beats the preset's 2
    assert config.graph.text.dim == 32  # from the preset
    assert config.model.encoder == "rgcn"  # default
    assert config.train.stages[0].lr == 0.5
    assert [s.name for s in config.train.stages] == ["graph_pretrain", "alignment", "finetune"]


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"graph\.nope.*allowed keys: \[.*'num_partitions'"):
        load_config("demo", ["graph.nope=1"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"graph\.num_partitions.*abc"):
        load_config("demo", ["graph.num_partitions=abc"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("graph.num_partitions=0", r"graph\.num_partitions.*in 1-4096"),
        ("graph.partitioner=random", r"graph\.partitioner"),
        ("data.split_date=20241220", r"data\.split_date.*YYYY-MM-DD"),
        ("train.stages.0.losses={bogus: 1.0}", r"train\.stages\[graph_pretrain\]\.losses"),
        ("model.prompt_language=fr", r"model\.prompt_language"),
        ("graph.text.kind=bert", r"graph\.text\.kind.*'hashed', 'use' or 'transformer'"),
        ("graph.text.batch_size=0", r"graph\.text\.batch_size"),
        ("train.worker_resources.CPU=2", r"train\.worker_resources\.CPU.*a custom resource name"),
        ("graph.sampler_resources.netgpt_sampler=0", r"graph\.sampler_resources\.netgpt_sampler.*> 0"),
        ("train.bind_cores=always", r"train\.bind_cores.*'auto', 'true' or 'false'"),
        ("evaluate.models_per_replica=-1", r"evaluate\.models_per_replica.*>= 0 \(0: every folder"),
    ],
)
def test_rule_violations_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"no preset named 'nope'.*demo"):
        load_config("nope")


def test_saved_config_round_trips(tmp_path: Path):
    config = load_config("demo", ["model.hidden_size=48"])
    path = save_config(config, tmp_path)
    assert path == tmp_path / "config.yaml"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    again = load_config(path)
    assert OmegaConf.structured(again) == OmegaConf.structured(config)


def test_saved_config_is_readable_by_other_users_of_a_shared_volume(tmp_path: Path):
    previous = os.umask(0o022)
    try:
        path = save_config(load_config("demo"), tmp_path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644  # tempfile would have made it 0600


def test_llm_alone_variant_keeps_the_llm_stages_without_graph_tokens():
    config = load_config("demo")
    alone = llm_alone_variant(config)
    assert [s.name for s in alone.train.stages] == ["alignment", "finetune"]
    assert all(not s.graph_tokens for s in alone.train.stages)
    assert config.train.stages[2].losses["graph_regression"] > 0  # the graph head's loss is left out
    assert alone.train.stages[1].losses == {"answer_ce": 1.0, "prompt_regression": 1.0}
    assert alone.train.stages[1].lr == config.train.stages[2].lr
    assert alone.train.run_name == "netgpt_llm_alone" and config.train.run_name == "netgpt"
    assert alone.train.stages[1].active_parts() == ["llm", "prompt_head"]
    assert alone.train.stages[1].predictions() == ["answer", "regression"]


def test_a_stage_without_graph_tokens_cannot_train_the_graph_head():
    with pytest.raises(ConfigError, match=r"train\.stages\[graph_pretrain\]\.graph_tokens"):
        load_config("demo", ["train.stages.0.graph_tokens=false"])
    with pytest.raises(ConfigError, match=r"uses_llm.*answer_ce"):
        load_config("demo", ["train.stages.1.uses_llm=false"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.run_name=../../etc", r"'train\.run_name': expected a folder name"),
        ("train.run_name=/", r"'train\.run_name': expected a folder name"),
        ("graph.num_partitions=100000", r"'graph\.num_partitions': expected an integer in 1-4096"),
        ("graph.remote_cache_rows=-1", r"'graph\.remote_cache_rows': expected an integer in 0-10000000"),
        ("train.stages.0.losses={graph_regression: -1.0}", r"losses': expected weights > 0"),
        ("train.stages.0.name=../x", r"name': expected a name without"),
        ("train.preemption_check_every=-1", r"'train\.preemption_check_every': expected an integer >= 0"),
    ],
)
def test_unsafe_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_a_broken_yaml_names_its_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  num_workers: [1\n")
    with pytest.raises(ConfigError, match=rf"config file {path}, line 3, column 1: not valid YAML"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("graph.store_dir=/", r"'graph\.store_dir': expected a folder of its own"),
        ("graph.store_dir=/etc", r"'graph\.store_dir': expected a folder of its own"),
        ("graph.store_dir='~'", r"'graph\.store_dir': expected a folder of its own"),
        ("data.tables_dir=/", r"'data\.tables_dir': expected a folder of its own"),
        ("train.storage_path=/", r"'train\.storage_path': expected a folder of its own"),
        ("graph.store_dir=''", r"'graph\.store_dir': expected a folder"),
        ("train.run_name=''", r"'train\.run_name': expected a folder name"),
        ("train.run_name=..", r"'train\.run_name': expected a folder name"),
        ("train.run_name=a\\b", r"'train\.run_name': expected a folder name"),
        ("data.split_date=2024-13-45", r"data\.split_date.*YYYY-MM-DD"),
        ("train.stages.0.losses={graph_regression: 0.0}", r"losses': expected weights > 0"),
    ],
)
def test_unsafe_paths_names_and_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_the_encoder_has_one_layer_per_sampled_hop():
    with pytest.raises(
        ConfigError, match=r"'model\.num_layers'.*graph\.fanouts \[10, 10, 10\] has 3 entries"
    ):
        load_config("demo", ["graph.fanouts=[10,10,10]"])
    assert load_config("demo", ["graph.fanouts=[10,10,10]", "model.num_layers=3"]).model.num_layers == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["graph.store_dir=runs/x"], None),  # apart from the others: accepted
        (
            ["graph.store_dir=runs/demo/tables"],
            r"'data\.tables_dir': expected a folder apart from graph\.store_dir",
        ),
        (
            ["graph.store_dir=runs/demo/tables/graph"],
            r"'graph\.store_dir': expected a folder apart from data\.tables",
        ),
        (
            ["graph.store_dir=runs/demo/ray/netgpt"],
            r"'graph\.store_dir': expected a folder apart from train\.storage_path/train\.run_name",
        ),
        (
            ["train.storage_path=runs/demo/graph/r", "train.run_name=x"],
            r"'train\.storage_path/train\.run_name': expected a folder apart from graph\.store_dir",
        ),
    ],
)
def test_outputs_that_would_replace_one_another_are_refused_naming_both_keys(overrides, message):
    if message is None:
        load_config("demo", overrides)
        return
    with pytest.raises(ConfigError, match=message):
        load_config("demo", overrides)


def test_a_stage_must_train_a_part_its_losses_reach():
    with pytest.raises(
        ConfigError,
        match=r"train\.stages\[alignment\]\.trainable': expected at least one part that the losses",
    ):
        load_config("demo", ["train.stages.1.trainable=[graph_head]"])


def test_hgt_heads_divide_the_hidden_size():
    with pytest.raises(
        ConfigError, match=r"'model\.hgt_heads': expected a divisor of model\.hidden_size \(30\)"
    ):
        load_config("demo", ["model.encoder=hgt", "model.hidden_size=30", "model.hgt_heads=4"])
    assert load_config("demo", ["model.encoder=rgcn", "model.hidden_size=30", "model.hgt_heads=4"])


def test_the_llm_alone_variant_drops_a_stage_that_trains_the_projector_alone():
    config = load_config("xs_video_paper")
    assert config.train.stages[1].active_parts() == ["projector"]
    alone = llm_alone_variant(config)
    assert [s.name for s in alone.train.stages] == ["finetune"]
    assert all(s.active_parts() for s in alone.train.stages)


@pytest.mark.parametrize("key", ["graph.batch_size", "graph.seed"])
def test_a_retired_key_is_refused_as_an_override(key):
    with pytest.raises(ConfigError, match=rf"{key}.*allowed keys"):
        load_config("demo", [f"{key}=8"])


def test_a_saved_config_with_retired_keys_still_loads_with_a_warning(tmp_path: Path):
    saved = tmp_path / "config.yaml"
    saved.write_text("graph:\n  num_partitions: 3\n  batch_size: 512\n  seed: 0\n", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        config = load_config(saved)
    assert config.graph.num_partitions == 3
    warned = [str(w.message) for w in caught]
    assert any(f"{saved}: key 'graph.batch_size' is no longer used" in m for m in warned), warned
    assert any(f"{saved}: key 'graph.seed' is no longer used" in m for m in warned), warned


def test_shipped_presets_load_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for preset in ("demo", "small", "small_zh", "xs_video", "xs_video_paper"):
            load_config(preset)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", r"expected a mapping of sections"),
        ("graph: {num_partitions: 2\n", r"line \d+, column \d+: not valid YAML"),
    ],
)
def test_a_yaml_that_is_no_config_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"config file {path}.*{message}"):
        load_config(path)


def test_a_yaml_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  run_name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"config file {path}: not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize("key", ["bf16", "bind_cores"])
@pytest.mark.parametrize("value", ["true", "false"])
def test_a_bare_true_or_false_sets_an_auto_true_false_key(tmp_path, key, value):
    # YAML reads a bare true / false as a boolean, in an override and in a file alike
    assert getattr(load_config("demo", [f"train.{key}={value}"]).train, key) == value
    path = tmp_path / "run.yaml"
    path.write_text(f"train:\n  {key}: {value}\n", encoding="utf-8")
    assert getattr(load_config(str(path)).train, key) == value
