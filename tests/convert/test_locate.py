"""Which checkpoint a CHECKPOINT argument means; inputs that are no checkpoint are one-line errors."""

from __future__ import annotations

import json

import pytest

from netgpt.convert import ConvertError, convert
from netgpt.convert.locate import latest_registered, resolve

pytestmark = pytest.mark.timeout(300)


def test_each_kind_of_folder_resolves_to_its_checkpoint_and_run(zero3_run):
    for path, folder, kind in [
        (zero3_run.mid, zero3_run.mid, "checkpoint"),
        (zero3_run.best, zero3_run.best, "best"),
        (zero3_run.run_dir, zero3_run.latest, "latest registered checkpoint of the run"),
    ]:
        source = resolve(path)
        assert (source.folder, source.run_dir, source.kind) == (folder, zero3_run.run_dir, kind)
    assert resolve(zero3_run.best).best_stage == zero3_run.best.name
    assert resolve(zero3_run.mid).best_stage is None


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match=rf"{tmp_path / 'empty'}: not a checkpoint; expected") as error:
        convert(tmp_path / "empty", tmp_path / "out")
    assert "\n" not in str(error.value)
    with pytest.raises(ConvertError, match="does not exist"):
        convert(tmp_path / "nowhere", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_registry_without_checkpoints_or_naming_a_missing_one(copy_run, tmp_path):
    run = copy_run()
    registry = run.run_dir / "checkpoint_manager_snapshot.json"
    snapshot = json.loads(registry.read_text())
    snapshot["latest_checkpoint_result"]["checkpoint_dir_name"] = "step-00000099-r0"
    registry.write_text(json.dumps(snapshot))
    with pytest.raises(ConvertError, match="step-00000099-r0: registered in .* but missing"):
        latest_registered(run.run_dir)
    registry.write_text(json.dumps({**snapshot, "latest_checkpoint_result": None}))
    with pytest.raises(ConvertError, match="registered no checkpoint yet"):
        convert(run.run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
