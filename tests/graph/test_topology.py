"""The whole graph's structure: causal group prefixes, exclusions, and clear errors on bad tables."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from netgpt.data.schema import SAMPLES_FILE
from netgpt.graph.partition import assign_partitions
from netgpt.graph.topology import PAD, GraphInputError, read_topology


def test_group_prefixes_are_causal_and_exclude_the_own_video(tables_dir) -> None:
    topo = read_topology(tables_dir)
    group = topo.groups["has_same_topic_as"]
    for s in range(topo.num_samples):
        prefix = group.members[group.start[s] : group.start[s] + group.length[s]]
        assert (topo.day[prefix] <= topo.day[s]).all()
        later = group.members[group.start[s] + group.length[s] : group.gptr[group.gid[s] + 1]]
        assert (topo.day[later] > topo.day[s]).all()
        excluded = group.excl[s][group.excl[s] != PAD]
        assert set(prefix[excluded].tolist()) == set(prefix[topo.video[prefix] == topo.video[s]].tolist())


@pytest.mark.parametrize("method", ["metis", "topic", "hash"])
def test_partitions_cover_every_sample_and_keep_videos_whole(tables_dir, method) -> None:
    topo = read_topology(tables_dir)
    part = assign_partitions(topo, 3, method)
    assert set(part.tolist()) == {0, 1, 2}
    for video in range(len(topo.video_ids)):
        assert len(set(part[topo.video == video].tolist())) == 1


@pytest.mark.parametrize("num_partitions", [2, 3])
def test_metis_and_topic_keep_topics_whole_where_hash_cuts_them(tables_dir, num_partitions) -> None:
    """A cut topic costs its whole causal prefix in every partition it touches (partition.py)."""
    topo = read_topology(tables_dir)

    def topics_cut(method: str) -> int:
        part = assign_partitions(topo, num_partitions, method)
        return sum(len(set(part[topo.topic == t].tolist())) > 1 for t in range(len(topo.topic_names)))

    assert topics_cut("topic") == topics_cut("metis") == 0 < topics_cut("hash")


def test_metis_needs_a_topic_per_partition(tables_dir) -> None:
    topo = read_topology(tables_dir)
    with pytest.raises(
        ValueError, match=r"4 topics, fewer than graph.num_partitions=5; .* use partitioner='hash'"
    ):
        assign_partitions(topo, 5, "metis")


def test_history_from_the_future_is_an_error(tables_dir, tmp_path) -> None:
    table = pq.read_table(tables_dir / SAMPLES_FILE)
    rows = table.to_pylist()
    rows[0]["history_ids"] = [rows[1]["sample_id"]]
    pq.write_table(table.from_pylist(rows, schema=table.schema), tmp_path / SAMPLES_FILE)
    (tmp_path / "comments.parquet").write_bytes((tables_dir / "comments.parquet").read_bytes())
    with pytest.raises(
        GraphInputError, match=r"samples.parquet: sample_id 0, field history_ids: history sample 1"
    ):
        read_topology(tmp_path)
