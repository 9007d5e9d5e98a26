"""NetGPT with a tiny Qwen2 built from config and a tokenizer trained at test time."""

from __future__ import annotations

import json

import pytest
import torch

from netgpt.config import ModelConfig
from netgpt.model.netgpt import CONFIG_FILE, PART_FILES, NetGPT


@pytest.fixture
def model(model_cfg, tokenizer, feature_dims) -> NetGPT:
    torch.manual_seed(0)
    return NetGPT.build(model_cfg, feature_dims, tokenizer)


def test_parts_have_the_trainable_names(model):
    for name in ("encoder", "projector", "llm", "graph_head", "prompt_head"):
        assert sum(p.numel() for p in model.get_submodule(name).parameters()) > 0
    assert model.llm.get_input_embeddings().num_embeddings == len(model.tokenizer)


def test_stage1_runs_no_llm(model, make_batch):
    calls = []
    model.llm.register_forward_hook(lambda *args: calls.append(1))
    out = model(make_batch(), None, {"graph_regression": 1.0})
    assert calls == []
    assert out.prompt_pred is None and set(out.losses) == {"graph_regression"}
    assert out.graph_pred.shape == (2,) and ((out.graph_pred > 0) & (out.graph_pred < 9)).all()
    out.loss.backward()
    assert model.encoder.input_proj["video"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.llm.parameters())


def test_graph_tokens_change_output_and_gradients_reach_encoder(model, make_batch):
    batch = make_batch()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    weights = {"answer_ce": 1.0, "prompt_regression": 0.5, "graph_regression": 0.1}
    out = model(batch, prompts, weights)
    assert set(out.losses) == set(weights)
    expected = sum(weights[name] * value for name, value in out.losses.items())
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    for name in ("projector", "llm", "prompt_head", "graph_head"):
        assert any(
            p.grad is not None and p.grad.abs().sum() > 0 for p in model.get_submodule(name).parameters()
        )
    # Gradients reach the input projection of an attribute type through the LLM's losses alone.
    model.zero_grad()
    model(batch, prompts, {"answer_ce": 1.0}).loss.backward()
    assert model.encoder.input_proj["likes"].weight.grad.abs().sum() > 0

    other = make_batch(seed=1)
    other.seed_fields = batch.seed_fields
    with torch.no_grad():
        first = model(batch, prompts, {"answer_ce": 1.0})
        second = model(other, prompts, {"answer_ce": 1.0})
        again = model(batch, prompts, {"answer_ce": 1.0})
    # Same graph: bit-identical; another graph under the same prompt: a different answer loss and level.
    assert torch.equal(first.losses["answer_ce"], again.losses["answer_ce"])
    assert (first.losses["answer_ce"] - second.losses["answer_ce"]).abs() > 1e-6
    assert ((first.prompt_pred - second.prompt_pred).abs() > 1e-4).all()


def test_answer_loss_ignores_prompt_tokens(model, make_batch):
    batch = make_batch()
    builder = model.prompt_builder()
    prompts = builder.encode(batch.seed_fields, with_answer=True)
    with torch.no_grad():
        logits = model.llm(
            inputs_embeds=model._embed(model.encoder(batch).tokens, prompts),
            attention_mask=prompts.attention_mask,
            position_ids=prompts.position_ids,
        ).logits
        loss = model(batch, prompts, {"answer_ce": 1.0}).losses["answer_ce"]
    # The loss is the mean CE of exactly the answer tokens (level digits + eos), computed independently here.
    answer = (prompts.labels != -100).nonzero().tolist()
    assert len(answer) == 2 * len(builder.answer_ids(3))
    terms = [torch.log_softmax(logits[b, t - 1], -1)[prompts.labels[b, t]] for b, t in answer]
    torch.testing.assert_close(loss, -torch.stack(terms).mean())


def test_generate_levels_parses_greedy_answers(model, make_batch):
    batch = make_batch()
    model.eval()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=False)
    levels = model.generate_levels(batch, prompts, synced_gpus=False)
    assert len(levels) == 2
    assert all(level is None or isinstance(level, float) for level in levels)


def test_save_load_round_trip_is_exact(model, tmp_path, make_batch):
    batch = make_batch()
    model.eval()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    folder = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, "llm", *PART_FILES.values()])
    loaded = NetGPT.from_pretrained(folder)
    assert not any(module.training for module in loaded.modules())  # as transformers loads: no dropout
    assert loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    weights = {"answer_ce": 1.0, "prompt_regression": 1.0, "graph_regression": 1.0}
    with torch.no_grad():
        a, b = model(batch, prompts, weights), loaded(batch, prompts, weights)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.prompt_pred, b.prompt_pred)
    assert loaded.prompt_builder().encode(batch.seed_fields, True).input_ids.equal(prompts.input_ids)
    # Saving again over the folder replaces it whole and leaves no temporary folder behind.
    loaded.save_pretrained(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_load_rejects_other_format_and_missing_parts(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "model")
    (folder / PART_FILES["projector"]).unlink()
    with pytest.raises(FileNotFoundError, match="projector.safetensors"):
        NetGPT.from_pretrained(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    meta["format_version"] = 99
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"{CONFIG_FILE}.*format_version 99"):
        NetGPT.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        NetGPT.from_pretrained(tmp_path)


def test_loss_terms_are_checked(model, make_batch):
    with pytest.raises(ValueError, match="need prompts"):
        model(make_batch(), None, {"answer_ce": 1.0})
    with pytest.raises(ValueError, match="unknown terms"):
        model(make_batch(), None, {"ce": 1.0})


def test_k_graph_tokens(model_cfg, tokenizer, make_batch, feature_dims):
    cfg = ModelConfig(**{**model_cfg.__dict__, "num_graph_tokens": 3})
    model = NetGPT.build(cfg, feature_dims, tokenizer)
    batch = make_batch()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    assert int((prompts.input_ids == model.graph_pad_id).sum()) == 2 * 3
    out = model(batch, prompts, {"answer_ce": 1.0})
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_save_with_a_consolidated_state_dict(model, tmp_path, make_batch):
    """As after ZeRO-3 training: the weights come from a consolidated state dict (separate tensors, also
    for the tied embedding and output weights), not from the module's own parameters."""
    batch = make_batch()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    state = {key: value.detach().clone() + 0.01 for key, value in model.state_dict().items()}
    folder = model.save_pretrained(tmp_path / "model", state_dict=state)
    loaded = NetGPT.from_pretrained(folder).eval()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        weights = {"answer_ce": 1.0, "graph_regression": 1.0}
        assert torch.equal(model(batch, prompts, weights).loss, loaded(batch, prompts, weights).loss)


def test_hgt_encoder_in_netgpt(model_cfg, tokenizer, make_batch, feature_dims):
    cfg = ModelConfig(**{**model_cfg.__dict__, "encoder": "hgt", "hgt_heads": 2, "num_graph_tokens": 2})
    model = NetGPT.build(cfg, feature_dims, tokenizer)
    assert model.zero3_leaf_modules() and all(isinstance(c, type) for c in model.zero3_leaf_modules())
    batch = make_batch()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    out = model(batch, prompts, {"answer_ce": 1.0, "graph_regression": 1.0})
    out.loss.backward()
    assert model.encoder.input_proj["title"].weight.grad.abs().sum() > 0


def test_graph_tokens_replace_the_pad_embeddings_in_order(model_cfg, tokenizer, make_batch, feature_dims):
    cfg = ModelConfig(**{**model_cfg.__dict__, "num_graph_tokens": 3})
    model = NetGPT.build(cfg, feature_dims, tokenizer)
    batch = make_batch()
    batch.seed_fields[1]["title"] = "a longer title, so the rows are padded differently"
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    with torch.no_grad():
        tokens = model.encoder(batch).tokens
        embeds = model._embed(tokens, prompts)
        projected = model.projector(tokens)
        plain = model.llm.get_input_embeddings()(prompts.input_ids)
    pads = prompts.input_ids == model.graph_pad_id
    for row in range(2):
        assert torch.equal(embeds[row][pads[row]], projected[row])
        assert torch.equal(embeds[row][~pads[row]], plain[row][~pads[row]])


def test_without_graph_tokens_the_llm_sees_the_text_alone(model, make_batch):
    """The LLM-alone baseline: same prompt less the graph, so another graph changes nothing the LLM sees."""
    batch, other = make_batch(), make_batch(seed=1)
    other.seed_fields = batch.seed_fields
    prompts = model.prompt_builder(graph_tokens=False).encode(batch.seed_fields, with_answer=True)
    with torch.no_grad():
        first = model(batch, prompts, {"answer_ce": 1.0}, graph_tokens=False)
        second = model(other, prompts, {"answer_ce": 1.0}, graph_tokens=False)
    assert torch.equal(first.losses["answer_ce"], second.losses["answer_ce"])
    assert torch.equal(first.prompt_pred, second.prompt_pred)
    out = model(batch, prompts, {"answer_ce": 1.0, "prompt_regression": 1.0}, graph_tokens=False)
    out.loss.backward()
    assert all(p.grad is None for p in model.projector.parameters())
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.llm.parameters())
    with_graph = model.prompt_builder().encode(batch.seed_fields, with_answer=False)
    with pytest.raises(ValueError, match="expected none"):
        model(batch, with_graph, {}, graph_tokens=False)


def test_constrained_answers_are_always_levels(model, make_batch):
    # An untrained tiny LLM writes anything when free; constrained to the ten answers it writes a level.
    batch = make_batch()
    model.eval()
    builder = model.prompt_builder()
    prompts = builder.encode(batch.seed_fields, with_answer=False)
    answers = [builder.answer_ids(level) for level in range(10)]
    levels = model.generate_levels(batch, prompts, synced_gpus=False, answers=answers)
    assert all(level in range(10) for level in levels)
    # Constrained to one answer, the model writes that one.
    only = model.generate_levels(batch, prompts, synced_gpus=False, answers=[builder.answer_ids(7)])
    assert only == [7.0, 7.0]


def test_a_meta_skeleton_whose_llm_lacks_the_graph_tokens_is_resized(model_cfg, tokenizer, feature_dims):
    """netgpt.convert builds the model on `meta`; a pretrained LLM's vocabulary lacks the graph tokens, and
    HF's mean resizing would read the old rows' values, which `meta` has none of."""
    from transformers import AutoModelForCausalLM

    from netgpt.model.llm import tiny_llm_config

    llm_config = tiny_llm_config(model_cfg.tiny_llm, tokenizer, model_cfg)
    llm_config.vocab_size = len(tokenizer) - 3
    with torch.device("meta"):
        skeleton = NetGPT(model_cfg, feature_dims, tokenizer, AutoModelForCausalLM.from_config(llm_config))
    embeddings = skeleton.llm.get_input_embeddings().weight
    assert embeddings.device.type == "meta" and embeddings.shape[0] == len(tokenizer)
