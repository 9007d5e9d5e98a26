"""Replacing best/<stage>: a crash after any step of the swap leaves one complete best that loading finds."""

from __future__ import annotations

import json

import pytest

from netgpt.train import best_swap
from netgpt.train.best_swap import find_best, old_of, partial_of, publish_best, recover_best, stage_of
from netgpt.train.manifest import checkpoint_problems


class Crash(BaseException):
    """The process dying between two steps."""


def _step_of(folder) -> int:
    return json.loads((folder / "trainer_state.json").read_text())["global_step"]


def _crash_after(monkeypatch, steps: int) -> None:
    """Let `steps` file operations of the swap (renames and deletions) happen, then crash."""
    done = [0]

    def counted(real):
        def operation(*args, **kwargs):
            if done[0] == steps:
                raise Crash
            done[0] += 1
            return real(*args, **kwargs)

        return operation

    monkeypatch.setattr(best_swap.os, "replace", counted(best_swap.os.replace))
    monkeypatch.setattr(best_swap.shutil, "rmtree", counted(best_swap.shutil.rmtree))


@pytest.mark.parametrize("steps", range(5))
def test_a_crash_at_any_step_leaves_a_complete_best(fake_checkpoint, tmp_path, monkeypatch, steps):
    final = tmp_path / "best" / "finetune"
    fake_checkpoint(final, 4)
    fake_checkpoint(partial_of(final), 8)
    old_of(final).mkdir()  # a leftover of an earlier crash, as the swap finds it at worst
    _crash_after(monkeypatch, steps)
    try:
        publish_best(final)
        finished = True
    except Crash:
        finished = False
    monkeypatch.undo()
    found = find_best(final)
    assert found is not None and checkpoint_problems(found) == []
    step = _step_of(found)
    assert step in (4, 8)
    assert recover_best(final) == final and _step_of(final) == step
    assert sorted(p.name for p in final.parent.iterdir()) == ["finetune"]
    if finished:
        assert _step_of(final) == 8


def test_an_incomplete_partial_is_never_taken(fake_checkpoint, tmp_path):
    final = tmp_path / "best" / "finetune"
    partial = fake_checkpoint(partial_of(final), 8)
    (partial / "manifest" / "rank1.json").unlink()  # rank 1 died while writing
    assert find_best(final) is None  # the stage's first best, cut short: there is none
    with pytest.raises(RuntimeError, match="incomplete, not published"):
        publish_best(final)
    fake_checkpoint(old_of(final), 4)
    assert find_best(final) == old_of(final)
    assert recover_best(final) == final and _step_of(final) == 4
    assert not partial.exists()


def test_the_stage_of_every_name_a_best_can_have(tmp_path):
    final = tmp_path / "best" / "finetune"
    assert {stage_of(folder) for folder in (final, partial_of(final), old_of(final))} == {"finetune"}
