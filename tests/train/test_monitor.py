"""The model-FLOP count behind TensorBoard's MFU and the GPU bench's: one counter, fed by `train_step`."""

import pytest
import torch
from transformers import Qwen2Config

from netgpt.train.engine import param_count
from netgpt.train.monitor import FlopCounter, StepMeter, llm_attention_width, train_flops
from netgpt.train.stages import freeze_for_stage, set_stage_hparams
from netgpt.train.step import train_step


def test_train_flops_without_and_with_the_attention_term():
    assert train_flops(100, 10, 7, 3) == 6.0 * 100 * 10 + 6.0 * 7 * 3
    # PaLM's term: 12 x layers x heads x head dim per attended pair; two prompts of 4 and 2 tokens
    with_attention = train_flops(100, 6, 0, 0, attention_width=5, token_pairs=4 * 4 + 2 * 2)
    assert with_attention == 6.0 * 100 * 6 + 12.0 * 5 * 20


def test_attention_width_of_qwen2_0_5b_shapes():
    config = Qwen2Config(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
    assert llm_attention_width(config) == 24 * 14 * 64


def test_a_micro_batch_is_counted_from_its_unpadded_prompt_lengths():
    counter = FlopCounter(llm_params=100, encoder_params=7, attention_width=5)
    meter = StepMeter()
    left_padded = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    counter.count(meter, left_padded, nodes=3)
    assert meter.tokens == 6
    assert meter.flops == train_flops(100, 6, 7, 3, attention_width=5, token_pairs=4 * 4 + 2 * 2)
    assert meter.attention_flops == 12.0 * 5 * 20  # not 12 x 5 x 2 rows x 4², the padded width
    counter.count(meter, None, nodes=2)  # a stage without the LLM: the encoder's nodes alone
    assert meter.tokens == 6 and meter.flops == train_flops(100, 6, 7, 5, 5, 20)


def test_the_default_counter_counts_tokens_but_no_flops():
    meter = StepMeter()
    FlopCounter().count(meter, torch.ones(2, 3, dtype=torch.long), nodes=4)
    assert (meter.tokens, meter.flops, meter.attention_flops) == (6, 0.0, 0.0)


def test_train_step_counts_attention_into_the_meter_tensorboard_reads(engine, batch_maker):
    """What the trainer logs as `perf/mfu` includes the attention term of the prompts the step fed the LLM,
    counted from a ZeRO-3 model's full sizes."""
    engine, config = engine
    model = engine.module
    counter = FlopCounter.of(model)
    assert counter.llm_params == param_count(model.llm) > 0 and counter.encoder_params > 0
    assert counter.attention_width == llm_attention_width(model.llm.config) > 0
    stage = config.train.stages[-1]  # fine-tuning: encoder, projector and LLM
    assert stage.uses_llm
    set_stage_hparams(engine.optimizer, stage, freeze_for_stage(model, stage), factor=1.0)
    batches = [batch_maker(2, seed=1), batch_maker(3, seed=2)]
    builder = model.prompt_builder()
    meter = StepMeter()
    train_step(engine, batches, stage, builder, meter, counter)

    lengths = [builder.encode(b.seed_fields, with_answer=True).attention_mask.sum(dim=1) for b in batches]
    tokens = sum(int(x.sum()) for x in lengths)
    pairs = sum(int((x * x).sum()) for x in lengths)
    nodes = sum(int(b[t].num_nodes or 0) for b in batches for t in b.node_types)
    assert meter.samples == 5 and meter.tokens == tokens
    assert meter.attention_flops == 12.0 * counter.attention_width * pairs > 0
    dense = 6.0 * counter.llm_params * tokens + 6.0 * counter.encoder_params * nodes
    assert meter.flops == pytest.approx(dense + meter.attention_flops)
