import pytest

from netgpt.cli import main
from netgpt.config import load_config
from netgpt.data.prepare import prepare
from netgpt.data.summary import ImportSummary


def test_prepare_writes_tables_summary_and_config_and_prints_the_table(example_path, tmp_path, capsys):
    config = load_config("demo", ["data.val_days=5"])
    summary = prepare(example_path, tmp_path / "t", config.data, progress=True, config=config)
    assert (tmp_path / "t" / "config.yaml").read_text().count("val_days: 5") == 1
    assert ImportSummary.read(tmp_path / "t") == summary
    shown = capsys.readouterr().out
    for heading in ("per platform", "levels", "splits", "anomalies", "zero_views_抖音"):
        assert heading in shown


def test_prepare_refuses_a_config_whose_data_section_differs(example_path, tmp_path):
    config = load_config("demo")
    with pytest.raises(ValueError, match="differ"):
        prepare(example_path, tmp_path / "t", load_config("demo", ["data.val_days=9"]).data, config=config)


def test_cli_synth_then_prepare(tmp_path, capsys):
    raw = tmp_path / "s.json"
    assert main(["synth", "--out", str(raw), "--videos", "30", "--seed", "2"]) == 0
    assert main(["prepare", "--input", str(raw), "--out", str(tmp_path / "t"), "data.val_days=4"]) == 0
    summary = ImportSummary.read(tmp_path / "t")
    assert summary.videos == 30 and summary.val_days == 4
    assert "val_days: 4" in (tmp_path / "t" / "config.yaml").read_text()
    assert "levels" in capsys.readouterr().out
