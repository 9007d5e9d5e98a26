"""A sampled subgraph as numpy arrays, and its PyG `HeteroData` form.

The sampler actors build and ship the arrays; only the process that trains or rates a batch turns it into a
`HeteroData`. This module imports neither torch nor PyG at its top, and must not, so that a sampler actor's
process never loads them: about 7 s of CPU at each start on a 2-core machine, and each run starts one actor
per partition beside its Train workers, which load them at the same time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from netgpt.graph.seeds import SeedFields
from netgpt.graph.types import VIDEO

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData


@dataclass
class SampledSubgraph:
    """Node features and ids per node type, edge indices per edge type, and the seeds' labels.

    The seeds are the first `num_seeds` video nodes, in the order they were asked for."""

    x: dict[str, np.ndarray]
    """node type -> [nodes, features] float32"""
    n_id: dict[str, np.ndarray]
    """node type -> [nodes] int64: the node's id in the store (a video's sample id)"""
    edge_index: dict[tuple[str, str, str], np.ndarray]
    """edge type -> [2, edges] int64 (source row, destination row)"""
    num_seeds: int
    y: np.ndarray
    """[num_seeds] float32: the seeds' SPIR levels"""
    sample_id: np.ndarray
    """[video nodes] int64: every video node's sample id"""
    seed_fields: list[SeedFields]
    """the prompt fields of each seed (`netgpt.graph.seeds`)"""

    def to_hetero_data(self) -> HeteroData:
        """The PyG batch the encoder and the prompts read (docs/graph.md#a-sampled-batch); its tensors share
        memory with these arrays."""
        import torch  # only here: see the module docstring
        from torch_geometric.data import HeteroData

        batch = HeteroData()
        for node_type, x in self.x.items():
            batch[node_type].x = torch.from_numpy(x)
            batch[node_type].n_id = torch.from_numpy(self.n_id[node_type])
        for edge_type, edge_index in self.edge_index.items():
            batch[edge_type].edge_index = torch.from_numpy(edge_index)
        batch[VIDEO].batch_size = self.num_seeds
        batch[VIDEO].y = torch.from_numpy(self.y)
        batch[VIDEO].sample_id = torch.from_numpy(self.sample_id)
        batch.seed_fields = self.seed_fields
        return batch
