"""The graph of new samples (videos to rate that are not in the store), built against an existing store.

    new = NewSamples(new_dir, input_name, tables_dir, store_dir, graph_cfg)   # new_dir: `import_new_samples`
    ext = new.write_store(out_dir, num_hops)          # a one-partition store whose seeds are the new samples
    sampler = NeighborSampler(open_partition(ext, 0), fanouts, relation_fanouts, num_hops)
    batch = sampler.sample(new.internal_ids[:16], rng)

What a new sample sees is what a stored sample sees in training (`topology.py`): its own attributes and
comments, its topic and platform nodes, its earlier states (`历史状态`, in the store or in the input), and the
causal prefix of its topic and author groups (every sample crawled on or before its day, other videos only),
taken over the store's samples *and* the input's. Its neighbours expand the same way for L hops.

Design: an extension store, written by the store's own code. The new samples are appended to the store's
video-level structure (read from the tables the store was built from: a few integers and short strings per
sample, which one process holds at full scale, `topology.py`), the union's structure is recomputed with
`make_topology`, and `build._plan_partition` + `build._write_partition` write one partition whose seeds are
the new samples and whose halo is their L-hop causal in-neighbourhood. Then the store's `NeighborSampler`
samples it unchanged. Why this design:
- Same graph as training, by construction: the groups, causal prefixes, exclusions, halo closure and every
  feature row come from the functions that built the store, with the store's own graph settings (its saved
  `config.yaml`: text encoder, time encoding, log scalars, content vectors; the feature widths are checked
  against its `meta.json`). A second implementation of features or groups would drift.
- The store alone cannot give these rows: a partition holds attributes, comments and in-edges only for its
  inner ring, so a stored sample that is in no partition's inner ring (e.g. a final state crawled after every
  seed of its topic and author) has only its content row there, yet it is a 1-hop neighbour of a new sample
  crawled later; and a new sample crawled on a stored sample's day joins that sample's group prefix, so the
  stored in-edges are not the union's. The structure is therefore recomputed, and the features of the
  halo's rows re-encoded from the tables' rows.
- Bounded memory: only the halo's rows of the tables are read (parquet row filters on sample id) and encoded,
  never the whole store's feature rows; `write_store(positions=...)` limits the seeds to a chunk of the input,
  so the halo (and the memory) follows the chunk, not the input. The cost is encoding the halo's text again,
  the cost of building one partition.
Sample ids of the input may collide with the store's: every new sample gets an internal id above the store's
largest (in input order); `input_ids` maps back, and earlier-state ids name a sample of the input when the
input has that id, else a sample of the store (checked like `prepare` checks them: same video, crawled
before).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netgpt.config import GraphConfig, load_config
from netgpt.data.schema import COMMENTS_FILE, COMMENTS_SCHEMA, NEW_SAMPLES_SCHEMA, SAMPLES_FILE
from netgpt.data.validate import DataError
from netgpt.graph.build import _meta, _plan_partition, _write_partition
from netgpt.graph.features import available_content, text_dim
from netgpt.graph.store import (
    BOOK_FILE,
    META_FILE,
    StoreError,
    partition_dir,
    read_meta,
    write_meta,
    write_store_atomically,
)
from netgpt.graph.topology import TOPOLOGY_COLUMNS, Topology, make_topology
from netgpt.graph.types import feature_dims

NEW_SPLIT = "new"
"""The `split` of a new sample in an extension store (not a training split)."""
NEW_SAMPLES_FILE = "new_samples.parquet"
"""In an extension store: internal sample id, input sample id and unknown topic/author flags per seed."""
HISTORY_FIELD = "历史状态"
_STRUCTURE_SCHEMA = pa.schema([NEW_SAMPLES_SCHEMA.field(c) for c in [*TOPOLOGY_COLUMNS, "history_ids"]])


def store_graph_config(store_dir: str | Path, fallback: GraphConfig) -> GraphConfig:
    """The graph settings the store was built with (its saved `config.yaml`), else `fallback`."""
    saved = Path(store_dir) / "config.yaml"
    return load_config(saved).graph if saved.is_file() else fallback


class NewSamples:
    """New samples (validated by `netgpt.data.importer.import_new_samples` into `new_dir`) joined to the
    structure of the store at `store_dir`, built from the tables at `tables_dir`.

    Arrays are in input order: `input_ids` (as in the input), `internal_ids` (the ids in the extension
    store and its batches), `unknown_topic` / `unknown_author` (no sample of the store has that topic /
    author: such a sample has no neighbour through that relation among stored samples)."""

    def __init__(
        self,
        new_dir: str | Path,
        input_name: str,
        tables_dir: str | Path,
        store_dir: str | Path,
        graph_cfg: GraphConfig,
    ) -> None:
        self.tables_dir, self.store_dir, self.graph_cfg = Path(tables_dir), Path(store_dir), graph_cfg
        self.input_name = input_name
        self.meta = read_meta(store_dir)
        dims = feature_dims(text_dim(graph_cfg.text), graph_cfg.time_dim, graph_cfg.content_dim)
        if dims != self.meta["feature_dims"]:
            raise StoreError(
                f"{self.store_dir / META_FILE}: feature widths {self.meta['feature_dims']}, the graph "
                f"settings give {dims}; rate with the graph settings the store was built with"
            )
        base = pq.read_table(self.tables_dir / SAMPLES_FILE, columns=[*TOPOLOGY_COLUMNS, "history_ids"])
        base = base.cast(_STRUCTURE_SCHEMA).sort_by("sample_id")
        base_ids = base["sample_id"].to_numpy()
        book_ids = np.sort(
            pq.read_table(self.store_dir / BOOK_FILE, columns=["sample_id"])["sample_id"].to_numpy()
        )
        if not np.array_equal(base_ids, book_ids):
            raise StoreError(
                f"{self.tables_dir / SAMPLES_FILE}: its samples are not the ones the store {self.store_dir} "
                "was built from; give the tables of that build (data.tables_dir) or rebuild the store"
            )
        self.base_max = int(base_ids.max()) if len(base_ids) else -1

        new = pq.read_table(Path(new_dir) / SAMPLES_FILE).cast(NEW_SAMPLES_SCHEMA)
        self.input_ids = new["sample_id"].to_numpy()
        self.internal_ids = self.base_max + 1 + np.arange(len(new), dtype=np.int64)
        history = self._resolve_history(new, base)
        new = new.set_column(
            new.schema.get_field_index("sample_id"), "sample_id", pa.array(self.internal_ids)
        )
        new = new.set_column(new.schema.get_field_index("history_ids"), "history_ids", history)
        new = new.set_column(
            new.schema.get_field_index("split"), "split", pa.array([NEW_SPLIT] * len(new), pa.string())
        )
        self.new = new.cast(NEW_SAMPLES_SCHEMA)
        self.unknown_topic = ~pc.is_in(new["topic"], value_set=base["topic"].unique()).to_numpy(
            zero_copy_only=False
        )
        self.unknown_author = ~pc.is_in(new["author_id"], value_set=base["author_id"].unique()).to_numpy(
            zero_copy_only=False
        )

        base_comments = pq.read_table(self.tables_dir / COMMENTS_FILE, columns=["sample_id"])["sample_id"]
        self.new_comments = pq.read_table(Path(new_dir) / COMMENTS_FILE).cast(COMMENTS_SCHEMA)
        owners = self.new_comments["sample_id"].to_numpy()
        order = np.argsort(self.input_ids, kind="stable")
        internal_owner = self.internal_ids[order[np.searchsorted(self.input_ids, owners, sorter=order)]]
        self.new_comments = self.new_comments.set_column(
            0, "sample_id", pa.array(internal_owner, pa.int64())
        ).cast(COMMENTS_SCHEMA)
        structure = pa.concat_tables([base, self.new.select(_STRUCTURE_SCHEMA.names)])
        comment_sid = np.concatenate([base_comments.to_numpy(), internal_owner]).astype(np.int64)
        self.topology: Topology = make_topology(structure, comment_sid, str(new_dir), str(new_dir))

    def _resolve_history(self, new: pa.Table, base: pa.Table) -> pa.Array:
        """Each new sample's earlier-state ids as internal ids: the input's sample of that id when the input
        has one, else the store's; each must be a state of the same video crawled before (`DataError`)."""
        lists = new["history_ids"].combine_chunks()
        rows = lists.value_parent_indices().to_numpy()
        wanted = lists.flatten().to_numpy().astype(np.int64)
        in_order = np.argsort(self.input_ids, kind="stable")
        pos = np.minimum(np.searchsorted(self.input_ids, wanted, sorter=in_order), len(in_order) - 1)
        in_input = self.input_ids[in_order[pos]] == wanted if len(in_order) else np.zeros(len(wanted), bool)
        base_ids = base["sample_id"].to_numpy()
        base_pos = np.minimum(np.searchsorted(base_ids, wanted), max(len(base_ids) - 1, 0))
        in_store = (base_ids[base_pos] == wanted) if len(base_ids) else np.zeros(len(wanted), bool)
        new_video = np.asarray(new["video_id"].to_pylist(), dtype=object)
        new_day = new["crawl_date"].cast(pa.int32()).to_numpy()
        base_video = np.asarray(base["video_id"].to_pylist(), dtype=object)
        base_day = base["crawl_date"].cast(pa.int32()).to_numpy()
        resolved = np.empty(len(wanted), dtype=np.int64)
        for k in range(len(wanted)):  # earlier-state ids are few (1-4 per sample)
            row, sid = int(rows[k]), int(wanted[k])
            if in_input[k]:
                other = int(in_order[pos[k]])
                resolved[k], video, day = self.internal_ids[other], new_video[other], new_day[other]
            elif in_store[k]:
                resolved[k], video, day = sid, base_video[base_pos[k]], base_day[base_pos[k]]
            else:
                raise self._error(
                    f"earlier-state id {sid} is neither a sample of this file nor of the store", row
                )
            if video != new_video[row]:
                raise self._error(f"earlier-state id {sid} is another video's sample", row)
            if day >= new_day[row]:
                raise self._error(f"earlier-state id {sid} was not crawled before this sample", row)
        offsets = lists.offsets.to_numpy() - lists.offsets.to_numpy()[0]
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(resolved, pa.int64()))

    def _error(self, rule: str, row: int) -> DataError:
        return DataError(self.input_name, rule, int(self.input_ids[row]), HISTORY_FIELD)

    def write_store(self, out_dir: str | Path, num_hops: int, positions: np.ndarray | None = None) -> Path:
        """Write the extension store at `out_dir`: one partition whose seeds are the new samples at
        `positions` (input order; all by default), with their `num_hops`-hop causal in-neighbourhood."""
        started = time.perf_counter()
        topology, cfg = self.topology, self.graph_cfg
        chosen = np.arange(len(self.internal_ids)) if positions is None else np.asarray(positions)
        row_of = np.searchsorted(topology.sample_id, self.internal_ids[chosen])
        part = np.ones(topology.num_samples, dtype=np.int64)
        part[row_of] = 0
        plan = _plan_partition(topology, part, 0, num_hops)
        dims = feature_dims(text_dim(cfg.text), cfg.time_dim, cfg.content_dim)
        wanted = plan["sample_ids"]
        halo_videos = topology.video_ids[topology.video[np.searchsorted(topology.sample_id, wanted)]]
        available = available_content(cfg.content_dir)
        missing_content = int(sum(1 for v in set(halo_videos.tolist()) if v not in available))
        out_dir = Path(out_dir)

        def fill(folder: Path) -> None:
            tables = folder / ".tables"
            self._write_halo_tables(tables, wanted)
            shared = {"topic_names": topology.topic_names, "platform_names": topology.platform_names}
            info = _write_partition(str(tables), cfg, str(partition_dir(folder, 0)), plan, shared)
            shutil.rmtree(tables)
            info["seeds_per_split"] = {NEW_SPLIT: int(plan["num_seeds"])}
            seeds = self.internal_ids[chosen]
            book = {
                "sample_id": seeds,
                "partition": np.zeros(len(seeds), np.int64),
                "split": [NEW_SPLIT] * len(seeds),
            }
            pq.write_table(pa.table(book), folder / BOOK_FILE)
            pq.write_table(
                pa.table(
                    {
                        "sample_id": self.internal_ids[chosen],
                        "input_sample_id": self.input_ids[chosen],
                        "unknown_topic": self.unknown_topic[chosen],
                        "unknown_author": self.unknown_author[chosen],
                    }
                ),
                folder / NEW_SAMPLES_FILE,
            )
            write_meta(folder, _meta(topology, cfg, dims, num_hops, [info], missing_content, started))

        write_store_atomically(out_dir, fill)
        return out_dir

    def _write_halo_tables(self, folder: Path, wanted: np.ndarray) -> None:
        """The tables' rows of the halo `wanted` (stored samples read by row filter, new samples appended),
        in the shape `_write_partition` reads."""
        folder.mkdir(parents=True)
        stored = pa.array(wanted[wanted <= self.base_max])
        base = pq.read_table(self.tables_dir / SAMPLES_FILE, filters=pc.field("sample_id").isin(stored))
        base = base.cast(NEW_SAMPLES_SCHEMA)
        new = self.new.filter(pc.is_in(self.new["sample_id"], value_set=pa.array(wanted)))
        pq.write_table(pa.concat_tables([base, new]), folder / SAMPLES_FILE)
        comments = pq.read_table(self.tables_dir / COMMENTS_FILE, filters=pc.field("sample_id").isin(stored))
        new_comments = self.new_comments.filter(
            pc.is_in(self.new_comments["sample_id"], value_set=pa.array(wanted))
        )
        pq.write_table(
            pa.concat_tables([comments.cast(COMMENTS_SCHEMA), new_comments]), folder / COMMENTS_FILE
        )
