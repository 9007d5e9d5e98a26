"""tools/bench/stream_cpu.py: the CPU of each further batch taken from pairs of streams, and a real run at a
small size whose figures add up."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("stream_cpu.py")


def test_each_further_batch_costs_the_difference_of_two_streams_over_the_batches_between(bench):
    # a stream costs 2 s to start, then 3 ms (sampler) + 1 ms (driver) a batch; the second pair 5 ms in all
    short = [{"batches": 100, "sampler_actors": 2.3, "driver": 0.1}, {"batches": 100, "sampler_actors": 2.5}]
    long = [{"batches": 400, "sampler_actors": 3.2, "driver": 0.4}, {"batches": 500, "sampler_actors": 4.5}]
    figures = bench.per_batch(short, long)
    assert figures["stream_cpu_ms_per_batch_each"] == [4.0, 5.0]
    assert figures["stream_cpu_ms_per_batch"] == 4.5
    assert figures["by_role_ms_per_batch"] == {"driver": 0.5, "sampler_actors": 4.0}  # medians of 1|0, 3|5
    assert figures["startup_cpu_s"] == 2.0  # 2.4 - 0.4 and 2.5 - 0.5
    with pytest.raises(ValueError, match="long stream of 100 batches"):
        bench.per_batch(short[:1], [{"batches": 100}])


def test_a_small_run_reports_figures_that_add_up(run_bench):
    """At this size a stream's start-up varies more than its batches cost (the difference of two short
    streams may come out below zero), so only how the figures are made is checked."""
    (line,) = run_bench(
        "stream_cpu.py", "--seeds", "4", "--batches", "200", "--repeats", "1", "--videos", "100"
    )
    assert line["bench"] == "stream_cpu" and line["seeds"] == 4
    assert line["block_batches"] == 8  # the demo's
    short, long = line["batches"]  # streams of whole epochs: at least 50 and 200 batches
    assert 50 <= short < long and long >= 200
    assert line["stream_cpu_ms_per_batch_each"] == [line["stream_cpu_ms_per_batch"]]
    by_role = line["by_role_ms_per_batch"]
    assert {"sampler_actors", "driver", "ray_daemons"} <= set(by_role)
    assert sum(by_role.values()) == pytest.approx(line["stream_cpu_ms_per_batch"], abs=0.01)
    assert line["in_process_cpu_ms_per_batch"] > 0
    assert line["ray_overhead_ms_per_batch"] == pytest.approx(
        line["stream_cpu_ms_per_batch"] - line["in_process_cpu_ms_per_batch"], abs=0.002
    )
