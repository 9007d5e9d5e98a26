"""netgpt/train/worker.py pieces that need no cluster: how often rank 0 posts a stage's progress."""

from __future__ import annotations

import time
from types import SimpleNamespace

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
