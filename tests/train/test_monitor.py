"""The model-FLOP count behind TensorBoard's MFU and the GPU bench's."""

from transformers import Qwen2Config

from netgpt.train.monitor import llm_attention_width, train_flops


def test_train_flops_without_and_with_the_attention_term():
    assert train_flops(100, 10, 7, 3) == 6.0 * 100 * 10 + 6.0 * 7 * 3
    # PaLM's term: 12 x layers x heads x head dim per attended pair; two prompts of 4 and 2 tokens
    with_attention = train_flops(100, 6, 0, 0, attention_width=5, token_pairs=4 * 4 + 2 * 2)
    assert with_attention == 6.0 * 100 * 6 + 12.0 * 5 * 20


def test_attention_width_of_qwen2_0_5b_shapes():
    config = Qwen2Config(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
    assert llm_attention_width(config) == 24 * 14 * 64
