"""netgpt/train/worker.py pieces that need no cluster: how often rank 0 posts a stage's progress, when a drain
is asked about and how it is answered, what a resumed stage runs first."""

from __future__ import annotations

import functools
import re
import time
from types import SimpleNamespace

import ray.train

from netgpt.config import load_config
from netgpt.train.checkpoint import TrainerState
from netgpt.train.worker import PROGRESS_POST_S, Curriculum


def _posting_trainer() -> tuple[SimpleNamespace, list[tuple]]:
    posts: list[tuple] = []
    trainer = SimpleNamespace(
        state=TrainerState(), _last_post=float("-inf"), _post=lambda *args: posts.append(args)
    )
    return trainer, posts


def test_a_stage_of_fast_steps_posts_its_first_and_last_step_and_not_each_one():
    stage = load_config("demo").train.stages[0]
    trainer, posts = _posting_trainer()
    total = 50
    for step in range(1, total + 1):  # 50 steps well within PROGRESS_POST_S
        trainer.state.stage_step = step
        Curriculum._post_step(trainer, stage, 0, total, loss=float(step))
    assert [post[3] for post in posts] == [1, total]
    assert posts[-1] == ("stage_update", stage.name, 0, total, total, float(total))


def test_steps_slower_than_the_post_interval_are_each_posted():
    stage = load_config("demo").train.stages[0]
    trainer, posts = _posting_trainer()
    for step in range(1, 4):
        trainer.state.stage_step = step
        Curriculum._post_step(trainer, stage, 0, 10, loss=0.5)
        time.sleep(PROGRESS_POST_S)
    assert [post[3] for post in posts] == [1, 2, 3]


def _stage_runner(due: str) -> tuple[SimpleNamespace, list[tuple]]:
    """A trainer whose stage parts only record their calls, resumed at the end of stage 2 with `due`."""
    calls: list[tuple] = []
    trainer = SimpleNamespace(
        state=TrainerState(stage_index=1, stage_step=3, global_step=7, evaluation_due=due), evaluate_test=True
    )
    trainer.train_stage = lambda index, stage: calls.append(("train", index))
    trainer.test = lambda stage: calls.append(("test", trainer.state.evaluation_due)) or {"test/x/acc": 0.5}
    trainer.checkpoint = lambda state, metrics: calls.append(("checkpoint", state.stage_index, metrics))
    return trainer, calls


def test_a_run_resumed_with_the_test_due_tests_the_stage_without_training_it_again():
    stage = load_config("demo").train.stages[1]
    trainer, calls = _stage_runner("test")
    Curriculum.run_stage(trainer, 1, stage)
    assert calls == [("test", ""), ("checkpoint", 2, {"stage_end": 1.0})]
    assert trainer.state.evaluation_due == "" and trainer.state.test_metrics == {"test/x/acc": 0.5}


def test_a_run_resumed_with_the_validation_due_or_none_trains_the_stage_then_tests_it():
    stage = load_config("demo").train.stages[1]
    for due in ("validation", ""):
        trainer, calls = _stage_runner(due)
        Curriculum.run_stage(trainer, 1, stage)
        assert [call[0] for call in calls] == ["train", "test", "checkpoint"], due


def _draining_trainer(every: int, checkpoint_every: int, notice_from: int, deadline_ms: int | None):
    """A trainer asked about drains every `every` steps, whose run's node is drained from step
    `notice_from` on: Ray Train's answer (`ask_preemption`, the one call that needs a Ray Train worker) is
    then `ray.train.PreemptionInfo`; each ask, checkpoint, settle and post is recorded."""
    calls: list[tuple] = []
    train = SimpleNamespace(preemption_check_every=every, checkpoint_every=checkpoint_every)
    trainer = SimpleNamespace(config=SimpleNamespace(train=train), state=TrainerState(), preemption=None)
    info = ray.train.PreemptionInfo(deadline_ms=deadline_ms, preempted_node_to_ranks={"node-a": [1, 0]})

    def ask_preemption():
        calls.append(("asked", trainer.state.global_step))
        return info if trainer.state.global_step >= notice_from else None

    def settle_checkpoint(wait=False):
        calls.append(("settle", wait))
        time.sleep(0.2 if wait else 0)  # the checkpoint being registered

    trainer.ask_preemption = ask_preemption
    trainer.checkpoint = lambda state, metrics: calls.append(("checkpoint", state.evaluation_due, metrics))
    trainer.settle_checkpoint = settle_checkpoint
    trainer._post = lambda *args: calls.append(args)
    for method in ("drain_notice", "answer_drain"):
        setattr(trainer, method, functools.partial(getattr(Curriculum, method), trainer))
    return trainer, calls


def _steps(trainer, calls: list[tuple], steps: int) -> list[tuple]:
    for step in range(1, steps + 1):
        trainer.state.global_step = step
        Curriculum.checkpoint_if_preempted(trainer, trainer.state, loss=0.25)
    return calls


DRAINED = r"step {step}: node\(s\) node-a being drained \(ranks \[0, 1\]\): checkpointed {when}, "
REGISTERED = r"registered (0\.[2-9]|[1-9]\d*\.\d) s after the notice"
"""The summary of a drain's answer, registered at least 0.2 s after it (the recorded settle's wait)."""


def _summary(calls: list[tuple]) -> str:
    (line,) = [call[1] for call in calls if call[0] == "summary"]
    return line


def test_a_drain_is_answered_at_the_next_asked_step_with_a_checkpoint_registered_before_going_on():
    trainer, calls = _draining_trainer(every=2, checkpoint_every=100, notice_from=3, deadline_ms=None)
    assert [call for call in _steps(trainer, calls, 8) if call[0] != "summary"] == [
        ("asked", 2),
        ("asked", 4),
        ("checkpoint", "", {"train_loss": 0.25, "preemption": 1.0}),
        ("settle", True),
        ("asked", 6),  # the same drain again: answered once
        ("asked", 8),
    ]
    assert re.fullmatch(DRAINED.format(step=4, when="this step") + REGISTERED, _summary(calls))


def test_a_step_just_checkpointed_is_not_checkpointed_again_and_the_time_left_is_said():
    deadline_ms = int((time.time() + 90) * 1000)
    trainer, calls = _draining_trainer(every=1, checkpoint_every=3, notice_from=3, deadline_ms=deadline_ms)
    answered = _steps(trainer, calls, 3)[3:]
    assert answered[0] == ("settle", True)  # the step's own checkpoint, registered before going on
    before = r", (89|90) s before the deadline"
    assert re.fullmatch(DRAINED.format(step=3, when="this step") + REGISTERED + before, _summary(calls))


def test_never_asked_when_the_setting_is_0():
    trainer, calls = _draining_trainer(every=0, checkpoint_every=100, notice_from=1, deadline_ms=None)
    assert _steps(trainer, calls, 5) == []


def test_a_drain_during_an_evaluation_checkpoints_a_copy_of_the_state_with_it_due():
    trainer, calls = _draining_trainer(every=2, checkpoint_every=100, notice_from=0, deadline_ms=None)
    trainer.state.global_step = 7
    for batch in range(4):
        Curriculum.checkpoint_if_preempted_during(trainer, "validation", batch)
    assert [call for call in calls if call[0] != "summary"] == [
        ("asked", 7),  # before batch 0
        ("checkpoint", "validation", {"preemption": 1.0}),
        ("settle", True),
        ("asked", 7),  # before batch 2
    ]
    assert re.fullmatch(DRAINED.format(step=7, when="during the validation") + REGISTERED, _summary(calls))
    assert trainer.state.evaluation_due == ""  # the run's own state goes on without it
