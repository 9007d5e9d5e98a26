"""Assign every sample to one of K partitions; all states of a video always share a partition.

Seeds are balanced first (one sampler actor serves each partition's seeds, so the largest partition sets
the pace), and groups are kept whole where that keeps the balance: a seed's same-topic neighbours are then
mostly in its own partition. Cutting a group costs its causal prefix in every partition it touches.

`topic` (the default) packs whole topics into the lightest partition, largest first; a topic too large to
fit whole (one topic holding most samples, or too few topics for K) is cut across the partitions in runs of
whole videos, ordered by author, filling the lightest partition to an equal share of seeds each time, so the
largest partition holds at most about 1/K of the seeds plus one topic's slack. `metis` places topics with
pymetis against the authors they share (topics heavier than a quarter of a partition's share of the seeds
are first cut into pieces the same way, so METIS can balance them; seeds within about 25%). `hash` spreads
videos by a fixed integer hash.
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


FIT_SLACK = 1.05
"""A topic goes whole into the lightest partition when that partition stays within this factor of an equal
share of the seeds; otherwise it is cut."""


def _video_seeds(topology: Topology) -> np.ndarray:
    """Seed samples (samples in a split) of every video."""
    is_seed = topology.split != "final"
    return np.bincount(topology.video, weights=is_seed, minlength=len(topology.video_ids))


def _topic_runs(topology: Topology, topic_of_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every topic's videos, ordered by author (so a cut keeps an author's videos of the topic together),
    as one array `videos` and pointers `ptr` (topic `t`'s videos are `videos[ptr[t]:ptr[t + 1]]`)."""
    author_of_video = np.zeros(len(topology.video_ids), dtype=np.int64)
    author_of_video[topology.video] = topology.groups["has_same_author_as"].gid
    videos = np.lexsort((np.arange(len(topic_of_video)), author_of_video, topic_of_video))
    ptr = np.zeros(len(topology.topic_names) + 1, dtype=np.int64)
    np.cumsum(np.bincount(topic_of_video, minlength=len(topology.topic_names)), out=ptr[1:])
    return videos, ptr


def _topic_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    topic_of_video, topic_weight = _topic_of_videos(topology)
    seeds = _video_seeds(topology)
    share = max(float(seeds.sum()), 1.0) / num_partitions
    videos, ptr = _topic_runs(topology, topic_of_video)
    load = np.zeros(num_partitions)
    video_part = np.zeros(len(topology.video_ids), dtype=np.int64)
    # Greedy loops over topics (hundreds) and, inside a cut topic, over partitions (K): no library packs
    # bins that may be split.
    for topic in np.argsort(-topic_weight, kind="stable"):
        run = videos[ptr[topic] : ptr[topic + 1]]
        weight = seeds[run]
        target = int(np.argmin(load))
        if load[target] + weight.sum() <= FIT_SLACK * share:
            video_part[run], load[target] = target, load[target] + weight.sum()
            continue
        while len(run):
            target = int(np.argmin(load))
            room = share - load[target]
            filled = np.cumsum(weight)
            if room <= 0 or filled[-1] <= room:
                count = len(
                    run
                )  # the rest fits (or every partition is full: rounding, the lightest takes it)
            else:
                count = max(int(np.searchsorted(filled, room, side="right")), 1)
            video_part[run[:count]], load[target] = target, load[target] + filled[count - 1]
            run, weight = run[count:], weight[count:]
    return video_part


def _topic_pieces(topology: Topology, max_weight: float) -> tuple[np.ndarray, int]:
    """Every video's topic, except that a topic of more than `max_weight` seeds is cut into pieces of at most
    that many (runs of videos ordered by author); returns the piece of every video and the pieces counted."""
    topic_of_video, _ = _topic_of_videos(topology)
    seeds = _video_seeds(topology)
    videos, ptr = _topic_runs(topology, topic_of_video)
    filled = np.cumsum(seeds[videos])
    before = np.concatenate([[0.0], filled])[ptr[:-1]]
    within = filled - np.repeat(before, np.diff(ptr))
    piece_in_topic = np.floor(np.maximum(within - seeds[videos], 0) / max(max_weight, 1.0)).astype(np.int64)
    _, piece = np.unique(
        np.stack([topic_of_video[videos], piece_in_topic], axis=1), axis=0, return_inverse=True
    )
    piece_of_video = np.zeros(len(topology.video_ids), dtype=np.int64)
    piece_of_video[videos] = piece.reshape(-1)
    return piece_of_video, int(piece.max()) + 1 if len(piece) else 0


def _metis_videos(topology: Topology, num_partitions: int) -> np.ndarray:
    """METIS over the video-level graph, each topic's videos (each piece of a topic too heavy to balance)
    contracted into one vertex beforehand.

    Why contract first: a topic is a star of thousands of videos around its group, and METIS's coarsening
    (matching neighbours) collapses a star one leaf per level, so on the uncontracted graph it gave up and
    cut topics (0.95 of the samples in one K=4 halo at XS-Video scale, against 0.49 with topics whole).
    A topic vertex weighs its seed samples; topics `a` and `b` are joined by the halo that separating them
    costs through shared authors: every author with samples in `a` drags their samples in `b` into `a`'s
    partition, and the other way round.
    """
    import pymetis

    piece_of_video, num_topics = _topic_pieces(topology, _video_seeds(topology).sum() / num_partitions / 4)
    if num_topics < num_partitions:
        raise ValueError(
            f"graph.partitioner='metis': the graph has {num_topics} topics (pieces of topics), fewer than "
            f"graph.num_partitions={num_partitions}; METIS places whole topics, so use partitioner='topic'"
        )
    topic_of_sample = piece_of_video[topology.video]
    topic_weight = np.bincount(
        piece_of_video, weights=np.maximum(_video_seeds(topology), 1), minlength=num_topics
    )
    # Rows (author, topic, samples), sorted by author; every pair of rows of one author adds to the cost.
    pairs, samples = np.unique(
        topology.groups["has_same_author_as"].gid * num_topics + topic_of_sample, return_counts=True
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
    return np.asarray(parts, dtype=np.int64)[piece_of_video]
