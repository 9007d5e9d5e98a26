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
`make_topology`, and `build.plan_partition` + `build.write_partition` write one partition whose seeds are
the new samples and whose halo is their L-hop causal in-neighbourhood. Then the store's `NeighborSampler`
samples it unchanged. Why this design:
- Same graph as training, by construction: the groups, causal prefixes, exclusions, halo closure and every
  feature row come from the functions that built the store, with the store's own graph settings (its saved
  `config.yaml`: text encoder, time encoding, log scalars, content vectors; the feature widths are checked
  against its `meta.json`). A second implementation of features or groups would drift.
- The store alone cannot give the graph: a partition holds in-edges only for its inner ring, so a stored
  sample in no partition's inner ring (e.g. a final state crawled after every seed of its topic and author)
  has none there, yet it is a 1-hop neighbour of a new sample crawled later; and a new sample crawled on a
  stored sample's day joins that sample's group prefix, so the stored in-edges are not the union's. The
  structure is therefore recomputed. The extension store owns every node it holds (its one partition has
  no other to fetch rows from).
- Text rows come from the store where it has them: `StoredTextEncoder` hands `write_partition` the rows the
  memory-mapped partitions already hold for the halo's titles, descriptions, comment texts, topics and
  platforms (read row by row from the partition that owns each of the halo's stored samples, found in the
  store's partition book), and encodes only the rest (the new samples' texts). So the expensive part
  (a transformer encoder) runs on little beyond the new samples, and a stored text gets exactly the row
  training saw (a transformer's rows depend slightly on how texts were batched, so re-encoding could differ
  in the last bits). Times, log scalars and content vectors are cheap and computed as the build does.
- Bounded memory: only the halo's rows are read, from the tables (parquet row filters on sample id) and from
  the partitions (memory-mapped), never the whole store's feature rows; `write_store(positions=...)` limits
  the seeds to a chunk of the input, so the halo (and the memory) follows the chunk, not the input. The halo
  is the full L-hop causal in-neighbourhood (as a store partition's is), not only the sampled part of it.
Sample ids of the input may collide with the store's: every new sample gets an internal id above the store's
largest (in input order); `input_ids` maps back, and earlier-state ids name a sample of the input when the
input has that id, else a sample of the store (checked like `prepare` checks them: same video, crawled
before).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netgpt.config import GraphConfig, load_config
from netgpt.data.schema import COMMENTS_FILE, COMMENTS_SCHEMA, NEW_SAMPLES_SCHEMA, SAMPLES_FILE
from netgpt.data.tables import read_comments, read_samples
from netgpt.data.validate import DataError
from netgpt.graph.build import (
    content_counts,
    content_files,
    content_ids,
    plan_partition,
    store_meta,
    write_partition,
)
from netgpt.graph.features import TextEncoder, make_text_encoder, text_dim
from netgpt.graph.store import (
    BOOK_FILE,
    META_FILE,
    Partition,
    StoreError,
    open_partition,
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


class StoredTextEncoder:
    """The configured text encoder, except that a text whose row the store holds gets that row.

    Counts what it served from the store (`reused`) and what it had to encode (`encoded`)."""

    def __init__(self, encoder: TextEncoder, known: dict[str, np.ndarray]) -> None:
        self.encoder, self.known, self.dim = encoder, known, encoder.dim
        self.reused = self.encoded = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        fresh = [i for i, text in enumerate(texts) if text not in self.known]
        if fresh:
            out[fresh] = self.encoder.encode([texts[i] for i in fresh])
        for i, text in enumerate(texts):
            if text in self.known:
                out[i] = self.known[text]
        self.encoded += len(fresh)
        self.reused += len(texts) - len(fresh)
        return out


def store_graph_config(store_dir: str | Path, fallback: GraphConfig) -> GraphConfig:
    """The graph settings the store was built with (its saved `config.yaml`), else `fallback`."""
    saved = Path(store_dir) / "config.yaml"
    return load_config(saved).graph if saved.is_file() else fallback


class NewSamples:
    """New samples (validated by `netgpt.data.importer.import_new_samples` into `new_dir`) joined to the
    structure of the store at `store_dir`, built from the tables at `tables_dir`.

    Arrays are in input order: `input_ids` (as in the input), `internal_ids` (the ids in the extension
    store and its batches), `unknown_topic` / `unknown_author` (no sample of the store has that topic /
    author: such a sample has no neighbour through that relation among stored samples).

    Content vectors come from the store's `graph.content_file` and from `content_file`, the new videos'
    vectors in the same format (a video in both must have the same vector in both); `content` counts the
    new videos with and without one."""

    def __init__(
        self,
        new_dir: str | Path,
        input_name: str,
        tables_dir: str | Path,
        store_dir: str | Path,
        graph_cfg: GraphConfig,
        content_file: str = "",
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
        if content_file and not graph_cfg.content_file:
            raise StoreError(
                f"{content_file}: the store {self.store_dir} was built without content vectors "
                "(graph.content_file empty), so its model never saw one; rate without them"
            )
        self.extra_content = (content_file,) if content_file else ()
        self.content_files = content_files(graph_cfg, self.extra_content)
        self.content_ids = content_ids(self.content_files, graph_cfg.content_dim)
        base = read_samples(self.tables_dir, [*TOPOLOGY_COLUMNS, "history_ids"])
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

        new = read_samples(new_dir, labels_optional=True)
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

        base_comments = read_comments(self.tables_dir, ["sample_id"])["sample_id"]
        self.new_comments = read_comments(new_dir)
        owners = self.new_comments["sample_id"].to_numpy()
        order = np.argsort(self.input_ids, kind="stable")
        internal_owner = self.internal_ids[order[np.searchsorted(self.input_ids, owners, sorter=order)]]
        self.new_comments = self.new_comments.set_column(
            0, "sample_id", pa.array(internal_owner, pa.int64())
        ).cast(COMMENTS_SCHEMA)
        structure = pa.concat_tables([base, self.new.select(_STRUCTURE_SCHEMA.names)])
        comment_sid = np.concatenate([base_comments.to_numpy(), internal_owner]).astype(np.int64)
        self.topology: Topology = make_topology(structure, comment_sid, str(new_dir), str(new_dir))
        self.content = content_counts(self.content_files, self.content_ids, self.new["video_id"].to_numpy())

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
        plan = plan_partition(topology, part, 0, num_hops)
        dims = feature_dims(text_dim(cfg.text), cfg.time_dim, cfg.content_dim)
        wanted = plan["sample_ids"]
        halo_videos = topology.video_ids[topology.video[np.searchsorted(topology.sample_id, wanted)]]
        content = content_counts(self.content_files, self.content_ids, halo_videos)
        out_dir = Path(out_dir)

        def fill(folder: Path) -> None:
            tables = folder / ".tables"
            base, comments = self._write_halo_tables(tables, wanted)
            encoder = StoredTextEncoder(make_text_encoder(cfg.text), self._stored_texts(base, comments))
            shared = {"topic_names": topology.topic_names, "platform_names": topology.platform_names}
            info = write_partition(
                str(tables),
                cfg,
                str(partition_dir(folder, 0)),
                plan,
                shared,
                encoder,
                self.extra_content,
                labels_optional=True,
            )
            shutil.rmtree(tables)
            info["seeds_per_split"] = {NEW_SPLIT: int(plan["num_seeds"])}
            info["texts_reused_from_store"], info["texts_encoded"] = encoder.reused, encoder.encoded
            seeds = self.internal_ids[chosen]
            book = {
                "sample_id": seeds,
                "partition": np.zeros(len(seeds), np.int64),
                "row": plan["video_row"][: len(seeds)],
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
            write_meta(folder, store_meta(topology, cfg, dims, num_hops, [info], content, started))

        write_store_atomically(out_dir, fill)
        return out_dir

    def _write_halo_tables(self, folder: Path, wanted: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """The tables' rows of the halo `wanted` (stored samples read by row filter, new samples appended),
        in the shape `write_partition` reads; returns the stored samples' rows and their comments."""
        folder.mkdir(parents=True)
        stored = pa.array(wanted[wanted <= self.base_max])
        base = read_samples(self.tables_dir, filters=pc.field("sample_id").isin(stored), labels_optional=True)
        new = self.new.filter(pc.is_in(self.new["sample_id"], value_set=pa.array(wanted)))
        pq.write_table(pa.concat_tables([base, new]), folder / SAMPLES_FILE)
        comments = read_comments(self.tables_dir, filters=pc.field("sample_id").isin(stored))
        new_comments = self.new_comments.filter(
            pc.is_in(self.new_comments["sample_id"], value_set=pa.array(wanted))
        )
        comments = comments.cast(COMMENTS_SCHEMA)
        pq.write_table(pa.concat_tables([comments, new_comments]), folder / COMMENTS_FILE)
        return base, comments

    def _partitions(self) -> list[Partition]:
        if not hasattr(self, "_opened"):
            self._opened = [
                open_partition(self.store_dir, p, self.meta) for p in range(len(self.meta["partitions"]))
            ]
        return self._opened

    def _owner_locations(self, sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each stored sample: the partition that owns it (holds its attribute and comment rows) and its
        row there, from the store's partition book."""
        book = pq.read_table(self.store_dir / BOOK_FILE, columns=["sample_id", "partition", "row"])
        ids = book["sample_id"].to_numpy()
        order = np.argsort(ids)
        at = order[np.searchsorted(ids, sample_ids, sorter=order)]
        return book["partition"].to_numpy()[at], book["row"].to_numpy()[at]

    def _stored_texts(self, base: pa.Table, comments: pa.Table) -> dict[str, np.ndarray]:
        """The text rows the store holds for the halo's stored samples `base` (titles, descriptions, the text
        part of comments) and for its topics and platforms: {text: row}. Read from the memory-mapped
        partitions that own them, only these rows."""
        partitions = self._partitions()
        width = self.meta["feature_dims"]["title"]
        known: dict[str, np.ndarray] = {}
        first = partitions[0]
        for name in ("topic", "platform"):
            vectors = np.asarray(first[f"{name}_x"])
            known.update(zip(self.meta[f"{name}_names"], vectors, strict=True))
        sample_ids = base["sample_id"].to_numpy()
        where, local = self._owner_locations(sample_ids)
        owners = comments["sample_id"].to_numpy()
        by_owner = np.argsort(owners, kind="stable")  # file order within an owner, as the build keeps it
        sorted_owners = owners[by_owner]
        rank = np.arange(len(owners)) - np.searchsorted(sorted_owners, sorted_owners)
        comment_texts = np.asarray(comments["text"].to_pylist(), dtype=object)[by_owner]
        for part in partitions:
            mine = np.flatnonzero(where == part.index)
            if not len(mine):
                continue
            for name, column in (("title", "title"), ("description", "description")):
                texts = base[column].take(pa.array(mine)).to_pylist()
                known.update(zip(texts, np.asarray(part.rows(f"x_{name}", local[mine])), strict=True))
            sorter = np.argsort(sample_ids[mine])
            at = np.minimum(np.searchsorted(sample_ids[mine], sorted_owners, sorter=sorter), len(mine) - 1)
            hit = sample_ids[mine][sorter[at]] == sorted_owners
            rows = part["owned_comment_ptr"][local[mine][sorter[at[hit]]]] + rank[hit]
            vectors = np.asarray(part.rows("comment_x", rows))[:, :width]
            known.update(zip(comment_texts[hit], vectors, strict=True))
        return known
