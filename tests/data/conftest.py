import json
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "xs_video_example.json"


@pytest.fixture
def example_path() -> Path:
    """The fixture file in the released shape (invented values, every key of a released record)."""
    return FIXTURE


@pytest.fixture
def example() -> dict:
    """The released shape (5 samples, 2 videos), as a dict to break on purpose."""
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[dict, str], Path]:
    def write(data: dict, name: str = "xs.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(data, ensure_ascii=False, indent=4), encoding="utf-8")
        return path

    return write
