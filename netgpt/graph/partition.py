"""Assign every sample to one of K partitions; all states of a video always share a partition.

What a partition costs: its seeds plus everything within L hops against the edges. A seed of a topic (or
author) group reaches the group's whole causal prefix, so a partition holding any late seed of a group pays
for nearly the whole group, however few of the group's videos it owns; cutting a group is what makes halos.

`topic` packs whole topics into the lightest partition, largest first (the default: topics are the largest
groups, so keeping them whole removes the largest halo term). `metis` cuts a video-level graph with pymetis:
one vertex per video (weighted by its seed samples) and one hub vertex per group (weight 0), each video
joined to its topic hub and its author hub, topic edges far heavier, so METIS keeps topics whole first and
authors second. (Chaining consecutive group members instead made a time cut cost one edge per group, so METIS
split by time; yet under causal prefixes the later side of a time cut still needs all the earlier side.)
`hash` spreads videos by a fixed integer hash.
"""

from __future__ import annotations

import numpy as np

from netgpt.graph.topology import Topology


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


def _seed_weight(topology: Topology) -> np.ndarray:
    """Seed samples per video (at least 1, so every video has weight)."""
    is_seed = topology.split != "final"
    return np.maximum(np.bincount(topology.video, weights=is_seed, minlength=len(topology.video_ids)), 1)


def _hash_videos(num_videos: int, num_partitions: int) -> np.ndarray:
    mixed = (np.arange(num_videos, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(33)) % np.uint64(num_partitions)).astype(np.int64)


def _topic_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    weight = _seed_weight(topology)
    first_topic = np.zeros(len(topology.video_ids), dtype=np.int64)
    first_topic[topology.video] = topology.topic
    topic_weight = np.bincount(first_topic, weights=weight, minlength=len(topology.topic_names))
    load = np.zeros(num_partitions)
    topic_part = np.zeros(len(topic_weight), dtype=np.int64)
    # A greedy loop over topics (hundreds, not samples): no library packs bins for us.
    for topic in np.argsort(-topic_weight, kind="stable"):
        target = int(np.argmin(load))
        topic_part[topic] = target
        load[target] += topic_weight[topic]
    return topic_part[first_topic]


TOPIC_EDGE_WEIGHT = 1000
"""METIS weight of a video-to-topic-hub edge (video-to-author-hub edges weigh 1): cutting a topic costs its
whole prefix in the other partition, cutting an author only the author's (tens of samples, not hundreds)."""


def _metis_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    import pymetis

    num_videos = len(topology.video_ids)
    videos = np.arange(num_videos)
    sources, hubs, weights = [], [], []
    next_hub = num_videos
    for name, group in topology.groups.items():
        group_of_video = np.zeros(num_videos, dtype=np.int64)
        group_of_video[topology.video] = group.gid
        sources.append(videos)
        hubs.append(next_hub + group_of_video)
        weights.append(np.full(num_videos, TOPIC_EDGE_WEIGHT if name == "has_same_topic_as" else 1))
        next_hub += len(group.gptr) - 1
    source, hub, weight = np.concatenate(sources), np.concatenate(hubs), np.concatenate(weights)
    src, dst = np.concatenate([source, hub]), np.concatenate([hub, source])
    order = np.lexsort((dst, src))
    xadj = np.zeros(next_hub + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=next_hub), out=xadj[1:])
    vertex_weight = np.zeros(next_hub, dtype=np.int64)
    vertex_weight[:num_videos] = _seed_weight(topology)
    _, parts = pymetis.part_graph(
        num_partitions,
        pymetis.CSRAdjacency(xadj.tolist(), dst[order].tolist()),
        vweights=vertex_weight.tolist(),
        eweights=np.concatenate([weight, weight])[order].tolist(),
    )
    return np.asarray(parts[:num_videos], dtype=np.int64)
