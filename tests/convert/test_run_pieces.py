"""Config, tokenizer and feature dims come from the run; a missing piece is a one-line error naming it."""

from __future__ import annotations

import shutil

import pytest

from netgpt.convert import ConvertError, convert

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda run: (run.run_dir / "config.yaml").unlink(),
            r"config.yaml: missing; expected the run's saved",
        ),
        (lambda run: shutil.rmtree(run.run_dir / "tokenizer"), r"tokenizer: missing or incomplete"),
        (lambda run: (run.best / "trainer_state.json").unlink(), r"trainer_state.json: missing"),
    ],
    ids=["config", "tokenizer", "trainer_state"],
)
def test_a_missing_piece(copy_run, tmp_path, damage, message):
    run = copy_run()
    damage(run)
    with pytest.raises(ConvertError, match=message) as error:
        convert(run.best, tmp_path / "out")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_graph_store_and_a_config_of_another_model(zero3_run, tmp_path):
    config = (zero3_run.run_dir / "config.yaml").read_text()
    other = tmp_path / "other.yaml"
    other.write_text(config.replace("store_dir: ", f"store_dir: {tmp_path / 'no-store'}  # was "))
    with pytest.raises(ConvertError, match=r"feature dims .*no-store/meta.json: missing"):
        convert(zero3_run.best, tmp_path / "out", config=other)
    wider = tmp_path / "wider.yaml"
    wider.write_text(config.replace("hidden_size: 16", "hidden_size: 24"))
    with pytest.raises(ConvertError, match=r"does not match the model its config describes: .*shapes"):
        convert(zero3_run.best, tmp_path / "out", config=wider)
    assert not (tmp_path / "out").exists()
