"""Progress without a terminal: plain lines at a bounded rate, with the step rate and the time left."""

from netgpt.train.progress import LineProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stage(step: int, total: int = 100, loss: float | None = 2.5, name: str = "alignment") -> dict:
    return {"name": name, "index": 1, "step": step, "total": total, "loss": loss}


def test_a_line_at_most_every_period_with_rate_and_eta():
    clock = Clock()
    lines = LineProgress(every_s=30, clock=clock)
    assert lines.update(stage(0, loss=None)) == "stage 2 alignment: step 0/100"  # a new stage at once
    clock.now += 10
    assert lines.update(stage(20)) is None
    clock.now += 30
    assert lines.update(stage(80)) == "stage 2 alignment: step 80/100, loss 2.5000, 2.00 steps/s, ETA 0m10s"
    clock.now += 1
    assert lines.update(stage(100)).startswith("stage 2 alignment: step 100/100")  # the last step always
    clock.now += 1
    assert lines.update(stage(100)) is None  # once
    assert lines.update(stage(0, total=7, name="finetune")).startswith("stage 2 finetune: step 0/7")
