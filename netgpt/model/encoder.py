"""Heterogeneous graph encoders (docs/model.md#the-graph-encoder): per-type input projection, message
passing, graph tokens.

Every module runs on every batch, whatever node types or relations a batch happens to lack rows or edges of:
under ZeRO-3 each forward gathers parameters collectively, so ranks that skipped a layer would hang.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv
from torch_geometric.utils import scatter

from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, VIDEO

VIDEO_RELATIONS = tuple(et for et in EDGE_TYPES if et[0] == VIDEO and et[2] == VIDEO)
"""Propagation relations between samples: the neighbours pooled into graph tokens 2..k."""

MAX_GRAPH_TOKENS = 1 + len(VIDEO_RELATIONS)


@dataclass
class EncoderOutput:
    tokens: torch.Tensor
    """[B, k, hidden]: token 0 is the seed's own video embedding (the graph summary); token j >= 1 is the mean
    embedding of the seed's in-neighbours along `VIDEO_RELATIONS[j - 1]` (zeros when it has none)."""

    @property
    def summary(self) -> torch.Tensor:
        """[B, hidden]: the seed video embeddings."""
        return self.tokens[:, 0]


class GraphEncoder(nn.Module):
    """Shared part of the encoders: input projection per node type and the pooling into graph tokens."""

    zero3_leaves: tuple[type[nn.Module], ...] = ()
    """Layer classes that use parameters outside their own forward (or leave some unused): under ZeRO-3 mark
    them with `deepspeed.utils.set_z3_leaf_modules` so their parameters are gathered as one unit."""

    def __init__(
        self, feature_dims: dict[str, int], hidden_size: int, dropout: float, num_tokens: int
    ) -> None:
        super().__init__()
        missing = [nt for nt in NODE_TYPE_NAMES if nt not in feature_dims]
        if missing:
            raise ValueError(f"feature_dims: missing node types {missing}; expected all of {NODE_TYPE_NAMES}")
        if not 1 <= num_tokens <= MAX_GRAPH_TOKENS:
            raise ValueError(
                f"model.num_graph_tokens: expected 1..{MAX_GRAPH_TOKENS} (the seed plus one pooled token per "
                f"video relation {[et[1] for et in VIDEO_RELATIONS]}), got {num_tokens}"
            )
        self.feature_dims = {nt: int(feature_dims[nt]) for nt in NODE_TYPE_NAMES}
        self.hidden_size = hidden_size
        self.num_tokens = num_tokens
        self.input_proj = nn.ModuleDict(
            {nt: nn.Linear(self.feature_dims[nt], hidden_size) for nt in NODE_TYPE_NAMES}
        )
        self.dropout_p = dropout
        """Dropout on every projected input and after every layer, applied as a function, not an
        `nn.Dropout` module: ZeRO-3 hooks every module call, forward and backward, and at the demo's sizes
        those hooks are most of a step's cost (the module was called once per node type and per layer)."""

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.dropout_p, self.training)

    def project_inputs(self, batch: HeteroData) -> dict[str, torch.Tensor]:
        """Every node type projected to the hidden size (zero-row types included)."""
        out = {}
        for nt, linear in self.input_proj.items():
            x = batch[nt].x if nt in batch.node_types and "x" in batch[nt] else None
            if x is None:
                x = linear.weight.new_zeros(0, self.feature_dims[nt])
            if x.dim() != 2 or x.size(1) != self.feature_dims[nt]:
                raise ValueError(
                    f"batch[{nt!r}].x: expected shape [n, {self.feature_dims[nt]}], got {list(x.shape)}"
                )
            out[nt] = self.dropout(linear(x.to(linear.weight.dtype)))
        return out

    def edge_index_dict(
        self, batch: HeteroData, device: torch.device
    ) -> dict[tuple[str, str, str], torch.Tensor]:
        """Every relation's edges (an empty [2, 0] tensor where the batch has none)."""
        edges = {}
        for et in EDGE_TYPES:
            present = et in batch.edge_types and "edge_index" in batch[et]
            edges[et] = (
                batch[et].edge_index if present else torch.zeros(2, 0, dtype=torch.long, device=device)
            )
        return edges

    def graph_tokens(
        self, video: torch.Tensor, edges: dict[tuple[str, str, str], torch.Tensor], num_seeds: int
    ) -> EncoderOutput:
        tokens = [video[:num_seeds]]
        for et in VIDEO_RELATIONS[: self.num_tokens - 1]:
            src, dst = edges[et]
            to_seed = dst < num_seeds
            tokens.append(segment_means(video[src[to_seed]], dst[to_seed], num_seeds))
        return EncoderOutput(torch.stack(tokens, dim=1))


class RGCNLayer(nn.Module):
    """One relational layer (docs/model.md#the-graph-encoder), for the video nodes (the only ones that
    receive messages):
    relu(sum over relations r of W_r · mean of the in-neighbours along r, + W_self · h + b).

    W_1..W_R and W_self are the blocks of one linear map over the concatenation
    [mean_1 | ... | mean_R | h] (blocks in `EDGE_TYPES` order, then the self block): the same rule as PyG's
    `HeteroConv` of per-relation mean `SAGEConv`s, written by hand because that is R + 1 parameters in
    R + 1 modules, each partitioned and fetched by ZeRO-3 on its own, multiplied by R + 1 small products.
    Here it is one parameter and one product. PyG's `RGCNConv` computes the same rule on a flattened node
    set but multiplies every node of the batch, attribute nodes included, by every relation's weight: 17×
    the work at the paper's sizes. Each block is initialised as its own `nn.Linear(hidden, hidden)` would
    be."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear((len(EDGE_TYPES) + 1) * hidden_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        hidden = self.linear.out_features
        for block in self.linear.weight.split(hidden, dim=1):
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        bound = 1 / math.sqrt(hidden)
        nn.init.uniform_(self.linear.bias, -bound, bound)

    def forward(self, means: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """`means`: [videos, R * hidden], the videos' relation means (`relation_means`); `video`: [videos,
        hidden]. Tensors in, not the dicts of features and edges: ZeRO-3 hooks every tensor among a module
        call's inputs, and the dicts held 30 of them."""
        return torch.relu(self.linear(torch.cat([means, video], dim=-1)))


ATTRIBUTE_RELATIONS = tuple(et for et in EDGE_TYPES if et[0] != VIDEO)
"""Relations from attribute nodes, which receive no messages: their means are the same at every layer."""


def relation_means(
    x_dict: dict[str, torch.Tensor],
    edges: dict[tuple[str, str, str], torch.Tensor],
    num_videos: int,
    relations: tuple[tuple[str, str, str], ...],
) -> torch.Tensor:
    """[num_videos, R * hidden]: each video's mean in-neighbour along each of `relations`, in its block of
    `EDGE_TYPES` order (zeros where it has none, and in the blocks of the other relations), as one scatter
    over the edges of those relations (video n's mean along relation r is segment n * R + r).

    One scatter, not a PyG aggregation module per relation: at the demo's sizes a step is almost all fixed
    cost, and R module calls a layer were a third of a graph-pretraining step's forward (py-spy): each call
    runs ZeRO-3's forward hooks and adds a backward hook node, and PyG's aggregation wrapper inspects its own
    signature and enters a torch.compile-disabled frame every time."""
    num_relations, width = len(EDGE_TYPES), x_dict[VIDEO].size(-1)
    messages, segments = [], []
    for et in relations:
        src, dst = edges[et]
        messages.append(x_dict[et[0]][src])
        segments.append(dst * num_relations + EDGE_TYPES.index(et))
    means = segment_means(torch.cat(messages), torch.cat(segments), num_videos * num_relations)
    return means.view(num_videos, num_relations * width)


def segment_means(values: torch.Tensor, segments: torch.Tensor, size: int) -> torch.Tensor:
    """[size, width]: the mean of the rows of `values` in each segment (zeros where none), summed in float32
    and returned in the dtype of `values`. PyG's scatter mean counts and sums in the values' dtype, and
    on a GPU in bf16 its atomic adds round at every addition: a count stops at 256 (256 + 1 rounds to 256)
    and a sum stops growing, so a segment of a few hundred neighbours (`graph.fanouts: -1` on large
    groups) would get a wrong mean. In float32 the mean is rounded once."""
    return scatter(values.float(), segments, 0, dim_size=size, reduce="mean").to(values.dtype)


class RGCNEncoder(GraphEncoder):
    """The paper's RGCN: `num_layers` relational layers over the projected inputs; attribute nodes keep their
    projected features (they receive no messages), video nodes are updated by each layer."""

    def __init__(
        self, feature_dims: dict[str, int], hidden_size: int, num_layers: int, dropout: float, num_tokens: int
    ) -> None:
        super().__init__(feature_dims, hidden_size, dropout, num_tokens)
        self.layers = nn.ModuleList(RGCNLayer(hidden_size) for _ in range(num_layers))

    def forward(self, batch: HeteroData) -> EncoderOutput:
        x_dict = self.project_inputs(batch)
        video = x_dict[VIDEO]
        edges = self.edge_index_dict(batch, video.device)
        # a mean is a sum over its own segment, so the layers add the video relations' means (recomputed, as
        # the videos change) to the attribute relations' (computed once): each block is exactly its mean
        fixed = relation_means(x_dict, edges, video.size(0), ATTRIBUTE_RELATIONS)
        for layer in self.layers:
            means = fixed + relation_means({VIDEO: video}, edges, video.size(0), VIDEO_RELATIONS)
            video = self.dropout(layer(means, video))
        return self.graph_tokens(video, edges, int(batch[VIDEO].batch_size))


class HGTLayer(nn.Module):
    """One PyG `HGTConv` over tensors in, a tensor out: the unit ZeRO-3 gathers whole (a leaf).

    HGTConv reads its `p_rel`/`skip` parameter dicts directly and keeps an output layer per node type of
    which only video's runs, so ZeRO-3 must gather it as one unit. DeepSpeed reduces a leaf's gradients in
    a full backward hook on the leaf, and PyTorch fires such a hook only for tensors among a module's inputs
    and outputs: HGTConv itself takes and returns dicts, and as the leaf its gradients were never reduced
    (under ZeRO-3 it did not train; only weight decay moved it). The hook fires once the gradients of the
    inputs are computed, i.e. after the layer's own backward, because its features come from the input
    projections, which train whenever the encoder does (a leaf no input of which needs a gradient gets the
    hook at once, before its backward)."""

    def __init__(self, hidden_size: int, heads: int) -> None:
        super().__init__()
        self.conv = HGTConv(hidden_size, hidden_size, (list(NODE_TYPE_NAMES), list(EDGE_TYPES)), heads)

    def forward(self, *features_then_edges: torch.Tensor) -> torch.Tensor:
        """Each node type's features in `NODE_TYPE_NAMES` order, then each relation's edge index in
        `EDGE_TYPES` order; returns the video nodes' new features."""
        count = len(NODE_TYPE_NAMES)
        x_dict = dict(zip(NODE_TYPE_NAMES, features_then_edges[:count], strict=True))
        edges = dict(zip(EDGE_TYPES, features_then_edges[count:], strict=True))
        return self.conv(x_dict, edges)[VIDEO]


class HGTEncoder(GraphEncoder):
    """Heterogeneous graph transformer layers (`HGTLayer`); only video nodes are updated, as only they
    receive messages."""

    zero3_leaves = (HGTLayer,)

    def __init__(
        self,
        feature_dims: dict[str, int],
        hidden_size: int,
        num_layers: int,
        dropout: float,
        num_tokens: int,
        heads: int,
    ) -> None:
        super().__init__(feature_dims, hidden_size, dropout, num_tokens)
        if hidden_size % heads:
            raise ValueError(f"model.hgt_heads: expected a divisor of hidden_size {hidden_size}, got {heads}")
        self.layers = nn.ModuleList(HGTLayer(hidden_size, heads) for _ in range(num_layers))

    def forward(self, batch: HeteroData) -> EncoderOutput:
        x_dict = self.project_inputs(batch)
        edges = self.edge_index_dict(batch, x_dict[VIDEO].device)
        edge_list = [edges[et] for et in EDGE_TYPES]
        for layer in self.layers:
            video = layer(*(x_dict[nt] for nt in NODE_TYPE_NAMES), *edge_list)
            x_dict = {**x_dict, VIDEO: self.dropout(torch.relu(video))}
        return self.graph_tokens(x_dict[VIDEO], edges, int(batch[VIDEO].batch_size))


def build_encoder(
    kind: str,
    feature_dims: dict[str, int],
    hidden_size: int,
    num_layers: int,
    dropout: float,
    num_tokens: int,
    hgt_heads: int,
) -> GraphEncoder:
    if kind == "rgcn":
        return RGCNEncoder(feature_dims, hidden_size, num_layers, dropout, num_tokens)
    if kind == "hgt":
        return HGTEncoder(feature_dims, hidden_size, num_layers, dropout, num_tokens, hgt_heads)
    raise ValueError(f"model.encoder: expected 'rgcn' or 'hgt', got {kind!r}")
