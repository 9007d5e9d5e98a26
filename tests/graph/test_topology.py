"""The whole graph's structure: causal group prefixes, exclusions, and clear errors on bad tables."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from netgpt.data.schema import SAMPLES_FILE
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
