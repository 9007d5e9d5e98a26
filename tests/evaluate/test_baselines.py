import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from netgpt.config import DataConfig
from netgpt.data.importer import import_json
from netgpt.evaluate.baselines import majority_baseline, majority_level

EXAMPLE = Path(__file__).parents[1] / "data" / "fixtures" / "xs_video_example.json"


@pytest.fixture
def tables(tmp_path) -> Path:
    """The example's two videos, the Douyin one posted late enough for its states to be test samples."""
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for key, day in (("0", "2024-12-22"), ("1", "2024-12-26"), ("2", "2025-01-05")):
        example[key]["发布时间"] = "2024-12-21 10:00:00"
        example[key]["当前时间"] = day
    path = tmp_path / "xs.json"
    path.write_text(json.dumps(example, ensure_ascii=False), encoding="utf-8")
    import_json(path, tmp_path / "tables", DataConfig(), progress=False)
    return tmp_path / "tables"


def test_majority_of_train_scored_on_test(tables):
    # train: the Bilibili video's first state (level 3); test: the Douyin video's first two states (level 4)
    assert majority_level(tables) == 3
    metrics = majority_baseline(tables, "test")
    assert metrics.count == 2 and metrics.acc == 0.0 and metrics.mae == 1.0 and metrics.mse == 1.0
    assert set(metrics.by_platform) == {"抖音"}


def test_an_empty_train_split_is_an_error(tables, tmp_path):
    samples = pq.read_table(tables / "samples.parquet")
    folder = tmp_path / "no_train"
    folder.mkdir()
    pq.write_table(samples.filter(pc.not_equal(samples["split"], "train")), folder / "samples.parquet")
    with pytest.raises(ValueError, match="train split is empty"):
        majority_level(folder)
