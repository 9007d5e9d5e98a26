"""Assign every sample to one of K partitions; all states of a video always share a partition.

What a partition costs: its seeds plus everything within L hops against the edges. A seed of a topic (or
author) group reaches the group's whole causal prefix, so a partition holding any late seed of a group pays
for nearly the whole group, however few of the group's videos it owns; cutting a group is what makes halos.

`topic` packs whole topics into the lightest partition, largest first (the default: topics are the largest
groups, so keeping them whole removes the largest halo term; seeds balanced within about 1%). `metis` also
keeps topics whole and places them with pymetis, trading the halo that shared authors drag across a cut
against balance (seeds within about 15%; halos about those of `topic` on the synthetic XS-Video graph).
Authors cannot all stay whole as well: a prolific author posts in many topics, so every partition holding
one of their late samples carries their whole history (the floor of the K=4 halo, see the bench).
`hash` spreads videos by a fixed integer hash.
"""

from __future__ import annotations

import numpy as np

from netgpt.graph.topology import Topology, _ranges


def assign_partitions(topology: Topology, num_partitions: int, method: str) -> np.ndarray:
    """Partition id (int64 [num_samples]) of every sample."""
    if num_partitions == 1:
        return np.zeros(topology.num_samples, dtype=np.int64)
    if method == "hash":
        by_video = _hash_videos(len(topology.video_ids), num_partitions)
    elif method == "topic":
        by_video = _topic_videos(topology, num_partitions)
    elif method == "metis":
        by_video = _metis_videos(topology, num_partitions)
    else:
        raise ValueError(f"graph.partitioner: expected 'metis', 'topic' or 'hash', got {method!r}")
    return by_video[topology.video]


def _topic_of_videos(topology: Topology) -> tuple[np.ndarray, np.ndarray]:
    """The topic of every video, and every topic's weight: its seed samples, each video counting at least 1
    (so every video has weight)."""
    is_seed = topology.split != "final"
    video_weight = np.bincount(topology.video, weights=is_seed, minlength=len(topology.video_ids))
    topic_of_video = np.zeros(len(topology.video_ids), dtype=np.int64)
    topic_of_video[topology.video] = topology.topic
    topic_weight = np.bincount(
        topic_of_video, weights=np.maximum(video_weight, 1), minlength=len(topology.topic_names)
    )
    return topic_of_video, topic_weight


def _hash_videos(num_videos: int, num_partitions: int) -> np.ndarray:
    mixed = (np.arange(num_videos, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(33)) % np.uint64(num_partitions)).astype(np.int64)


def _topic_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    topic_of_video, topic_weight = _topic_of_videos(topology)
    load = np.zeros(num_partitions)
    topic_part = np.zeros(len(topic_weight), dtype=np.int64)
    # A greedy loop over topics (hundreds, not samples): no library packs bins for us.
    for topic in np.argsort(-topic_weight, kind="stable"):
        target = int(np.argmin(load))
        topic_part[topic] = target
        load[target] += topic_weight[topic]
    return topic_part[topic_of_video]


def _metis_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    """METIS over the video-level graph, each topic's videos contracted into one vertex beforehand.

    Why contract first: a topic is a star of thousands of videos around its group, and METIS's coarsening
    (matching neighbours) collapses a star one leaf per level, so on the uncontracted graph it gave up and
    cut topics (0.95 of the samples in one K=4 halo at XS-Video scale, against 0.49 with topics whole).
    A topic vertex weighs its seed samples; topics `a` and `b` are joined by the halo that separating them
    costs through shared authors: every author with samples in `a` drags their samples in `b` into `a`'s
    partition, and the other way round.
    """
    import pymetis

    num_topics = len(topology.topic_names)
    if num_topics < num_partitions:
        raise ValueError(
            f"graph.partitioner='metis': the graph has {num_topics} topics, fewer than graph.num_partitions="
            f"{num_partitions}; METIS keeps topics whole, so use partitioner='hash'"
        )
    topic_of_video, topic_weight = _topic_of_videos(topology)
    # Rows (author, topic, samples), sorted by author; every pair of rows of one author adds to the cost.
    pairs, samples = np.unique(
        topology.groups["has_same_author_as"].gid * num_topics + topology.topic, return_counts=True
    )
    author, topic = pairs // num_topics, pairs % num_topics
    starts = np.searchsorted(author, author, side="left")
    ends = np.searchsorted(author, author, side="right")
    row = np.repeat(np.arange(len(pairs)), ends - starts)
    other = _ranges(starts, ends)
    cost = np.zeros((num_topics, num_topics), dtype=np.int64)
    np.add.at(cost, (topic[row], topic[other]), samples[other])
    cost = cost + cost.T
    np.fill_diagonal(cost, 0)
    source, target = np.nonzero(cost)
    xadj = np.concatenate([[0], np.cumsum(np.bincount(source, minlength=num_topics))])
    _, parts = pymetis.part_graph(
        num_partitions,
        pymetis.CSRAdjacency(xadj.tolist(), target.tolist()),
        vweights=topic_weight.astype(np.int64).tolist(),
        eweights=cost[source, target].tolist(),
    )
    return np.asarray(parts, dtype=np.int64)[topic_of_video]
