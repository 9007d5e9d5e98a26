"""The graph encoders: the RGCN rule (docs/model.md#the-graph-encoder), every layer on every batch, graph
tokens."""

from __future__ import annotations

import pytest
import torch

from netgpt.graph.types import EDGE_TYPES, VIDEO
from netgpt.model.encoder import VIDEO_RELATIONS, RGCNLayer, build_encoder, segment_means


def encoder(kind: str, feature_dims: dict[str, int], num_layers: int = 2, num_tokens: int = 1):
    torch.manual_seed(0)
    return build_encoder(kind, feature_dims, 8, num_layers, 0.0, num_tokens, hgt_heads=2)


def test_rgcn_layer_is_the_relational_mean_rule(feature_dims, make_batch):
    """One layer by hand: sum over relations of mean(in-neighbours) @ W_r, plus h @ W_self + bias, ReLU."""
    model = encoder("rgcn", feature_dims, num_layers=1)
    batch = make_batch(num_seeds=2, num_videos=4)
    layer = model.layers[0]
    *relation_weights, self_weight = layer.linear.weight.split(8, dim=1)
    with torch.no_grad():
        h = model.project_inputs(batch)
        expected = []
        for seed in range(2):
            total = h[VIDEO][seed] @ self_weight.T + layer.linear.bias
            for et, weight in zip(EDGE_TYPES, relation_weights, strict=True):
                edges = batch[et].edge_index
                neighbours = edges[0, edges[1] == seed]
                if len(neighbours):
                    total = total + h[et[0]][neighbours].mean(0) @ weight.T
            expected.append(torch.relu(total))
        got = model(batch).summary
    torch.testing.assert_close(got, torch.stack(expected))


def test_rgcn_blocks_start_as_separate_linear_layers_would():
    """Each relation's block of the layer's one weight is drawn as `nn.Linear(hidden, hidden)` draws its
    weight (bound 1/sqrt(hidden)), not with the bound of the whole concatenation's width."""
    layer = RGCNLayer(64)
    bound = 1 / 64**0.5
    for block in layer.linear.weight.split(64, dim=1):
        assert block.abs().max() <= bound and block.abs().max() > 0.9 * bound
    assert layer.linear.bias.abs().max() <= bound


def zero3_units(model) -> dict:
    """What ZeRO-3 gathers as one unit: each declared leaf layer, and every other module owning parameters."""
    modules = dict(model.named_modules())
    leaves = [name for name, m in modules.items() if isinstance(m, model.zero3_leaves)]
    return {
        name: m
        for name, m in modules.items()
        if name in leaves
        or (
            any(True for _ in m.parameters(recurse=False))
            and not any(name.startswith(f"{leaf}.") for leaf in leaves)
        )
    }


@pytest.mark.parametrize("kind", ["rgcn", "hgt"])
def test_every_module_runs_with_empty_types_and_relations(kind, feature_dims, make_batch):
    model = encoder(kind, feature_dims)
    batch = make_batch(
        empty_types=("comment", "fans", "plays"), empty_relations=("is_history_of", "has_same_topic_as")
    )
    assert batch["comment"].x.shape[0] == 0 and batch[VIDEO, "is_history_of", VIDEO].edge_index.shape == (
        2,
        0,
    )
    ran = set()
    leaves = zero3_units(model)
    for name, module in leaves.items():
        module.register_forward_hook(lambda *args, name=name: ran.add(name))
    out = model(batch)
    assert ran == set(leaves), f"modules not run: {sorted(set(leaves) - ran)}"
    assert out.tokens.shape == (2, 1, 8) and torch.isfinite(out.tokens).all()
    out.tokens.sum().backward()
    assert model.input_proj["likes"].weight.grad.abs().sum() > 0


def test_missing_types_are_treated_as_empty(feature_dims, make_batch):
    batch = make_batch()
    del batch["comment"]
    del batch["comment", "is_comment_of", VIDEO]
    out = encoder("rgcn", feature_dims)(batch)
    assert out.tokens.shape == (2, 1, 8)


def test_wrong_feature_width_names_the_type(feature_dims, make_batch):
    batch = make_batch()
    batch["title"].x = torch.zeros(4, feature_dims["title"] + 1)
    with pytest.raises(ValueError, match=r"batch\['title'\]\.x"):
        encoder("rgcn", feature_dims)(batch)


def test_pooled_neighbour_tokens(feature_dims, make_batch):
    model = encoder("rgcn", feature_dims, num_tokens=1 + len(VIDEO_RELATIONS))
    batch = make_batch(num_seeds=2, num_videos=4)
    out = model(batch)
    assert out.tokens.shape == (2, 4, 8)
    # Against the video embeddings of all 4 videos: seed 0's history is video 1, seed 1's is video 2; both
    # seeds' same-topic neighbours are videos 2 and 3; there are no same-author edges (zeros).
    batch["video"].batch_size = 4
    videos = model(batch).summary
    torch.testing.assert_close(out.tokens[:, 1], videos[[1, 2]])
    torch.testing.assert_close(out.tokens[:, 2], videos[[2, 3]].mean(0).expand(2, -1))
    assert torch.equal(out.tokens[:, 3], torch.zeros(2, 8))


def test_bf16_means_are_summed_in_float32_and_rounded_once():
    """Under bf16 (the GPU presets) a mean over a segment of 1000 rows is the float32 mean rounded once to
    bf16: PyG's scatter sums in the values' dtype (here it rounds the sum before dividing: 9 of 64 columns
    off; on a GPU its bf16 atomic adds stop counting at 256)."""
    torch.manual_seed(0)
    values = torch.rand(1000, 64).to(torch.bfloat16)
    means = segment_means(values, torch.zeros(1000, dtype=torch.long), size=2)
    assert means.dtype == torch.bfloat16 and means.shape == (2, 64)
    assert torch.equal(means[0], values.float().mean(0).to(torch.bfloat16))
    assert not means[1].any()  # a segment without rows


def test_too_many_graph_tokens_is_an_error(feature_dims):
    with pytest.raises(ValueError, match="num_graph_tokens"):
        encoder("rgcn", feature_dims, num_tokens=2 + len(VIDEO_RELATIONS))
