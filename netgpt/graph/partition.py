"""Assign every sample to one of K partitions; all states of a video always share a partition.

`metis` cuts the video-level graph with pymetis: one vertex per video (weighted by its seed samples), edges
between consecutive videos of every topic and author group (a chain per group keeps the graph linear in the
data; METIS then keeps groups together, which keeps each partition's halo small). `topic` packs whole topics
into the lightest partition, largest first; `hash` spreads videos by a fixed integer hash.
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


def _metis_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    import pymetis

    num_videos = len(topology.video_ids)
    sources, targets = [], []
    for group in topology.groups.values():
        ordered_videos = topology.video[group.members]
        same_group = group.gid[group.members][1:] == group.gid[group.members][:-1]
        a, b = ordered_videos[:-1][same_group], ordered_videos[1:][same_group]
        keep = a != b
        sources.append(a[keep])
        targets.append(b[keep])
    src = np.concatenate([*sources, *targets])
    dst = np.concatenate([*targets, *sources])
    pairs = np.unique(np.stack([src, dst], axis=1), axis=0) if len(src) else np.zeros((0, 2), np.int64)
    xadj = np.zeros(num_videos + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=num_videos), out=xadj[1:])
    _, parts = pymetis.part_graph(
        num_partitions,
        pymetis.CSRAdjacency(xadj.tolist(), pairs[:, 1].tolist()),
        vweights=_seed_weight(topology).astype(np.int64).tolist(),
    )
    return np.asarray(parts, dtype=np.int64)
