"""Fixtures shared across test packages."""

from __future__ import annotations

import os

import pytest

# Ray Train's controller polls its workers every 2 s by default, and a worker's `ray.train.report` waits
# until the controller has taken its previous report: the tests' runs checkpoint every 2 steps, so their
# workers sat in those waits (and a run's end and a lost worker were seen up to 2 s late). Every Ray
# process a test starts inherits this environment. Measured on the integration tests' tiny run, 2 cores,
# four runs each: 42.1 s mean at 0.5 s against 47.5 s at 2 s.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")


@pytest.fixture(scope="session")
def ray_cluster():
    """One in-process Ray cluster for the whole session (a process can hold only one), never an existing one.

    8 logical CPUs on 2 cores: room for 2 train workers, the sampler actors and the progress actor."""
    import ray

    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def llm_cache(tmp_path_factory):
    """One GGUF conversion cache (`model.llm_cache_dir`) for the session: each shipped GGUF is dequantized
    once, whichever test needs it first (the others find the converted folder)."""
    return tmp_path_factory.mktemp("llm-cache")


class _RunsCode:
    """Unpickling this runs `touch` on a marker file (what a hostile checkpoint would do)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def code_running_pickle():
    """`code_running_pickle(marker)`: an object whose unpickling creates `marker`; a loader that refuses it
    leaves no marker."""
    return _RunsCode


QWEN2_7B = {
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}


@pytest.fixture(scope="session")
def qwen2_7b_dir(tmp_path_factory):
    """A folder holding only Qwen2-7B's config.json (the LLM the xs_video preset names): all the resource
    plan reads of an LLM."""
    from transformers import Qwen2Config

    folder = tmp_path_factory.mktemp("qwen2_7b")
    Qwen2Config(**QWEN2_7B).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def held_out_world(tmp_path_factory, ray_cluster):
    """A synthetic XS-Video (100 videos) imported twice, whole and without some held-out samples, a graph
    store of each, and the held-out samples as a new-samples JSON file (for `netgpt predict`).

    Held out: the last two states of three videos with 3+ states (so the earlier of the two is a seed of the
    whole store, with earlier states left in the store), and every state of one more video. `config` points
    at the tables and store built without them (the store saves it as its `config.yaml`).

    Content vectors (3-d): `content` maps every video but a quarter of the stored ones to its vector; each
    store is built with the vectors of its own videos, and `new_content` holds those of the held-out videos
    (the same vector where the base store's file has the video too), as `netgpt predict --content` reads."""
    import json
    from types import SimpleNamespace

    import numpy as np

    from netgpt.config import load_config
    from netgpt.data.importer import import_json
    from netgpt.data.synthetic import write_synthetic
    from netgpt.data.validate import video_id_from_url
    from netgpt.graph.build import build_graph
    from netgpt.graph.features import write_content_file

    root = tmp_path_factory.mktemp("held_out")
    records = json.loads(write_synthetic(root / "all.json", videos=100, seed=7).read_text(encoding="utf-8"))
    states: dict[str, list[str]] = {}
    for key, record in records.items():
        states.setdefault(record["url"], []).append(key)
    long_videos = [keys for keys in states.values() if len(keys) >= 3]
    held = [key for keys in long_videos[:3] for key in keys[-2:]]
    held += next(keys for keys in states.values() if len(keys) == 2 and keys[0] not in held)
    new = {key: records[key] for key in held}
    (root / "base.json").write_text(
        json.dumps({k: v for k, v in records.items() if k not in new}, ensure_ascii=False), encoding="utf-8"
    )
    (root / "new.json").write_text(json.dumps(new, ensure_ascii=False), encoding="utf-8")
    videos = {
        name: list(dict.fromkeys(video_id_from_url(r["url"]) for r in part.values()))
        for name, part in (
            ("all", records),
            ("new", new),
            ("base", {k: v for k, v in records.items() if k not in new}),
        )
    }
    lacking = set([v for v in videos["all"] if v not in videos["new"]][::4])
    rng = np.random.default_rng(7)
    content = {v: rng.normal(size=3).astype(np.float32) for v in videos["all"] if v not in lacking}
    files = {}
    for name, ids in videos.items():
        given = [v for v in ids if v in content]
        files[name] = write_content_file(
            root / f"content_{name}.parquet", given, np.array([content[v] for v in given])
        )
    graph = [
        "graph.num_partitions=2",
        "graph.text.dim=16",
        "graph.time_dim=4",
        "graph.content_dim=3",
        "graph.fanouts=[-1,-1]",
    ]
    config = load_config(
        "demo",
        [
            *graph,
            f"data.tables_dir={root / 'tables'}",
            f"graph.store_dir={root / 'store'}",
            f"graph.content_file={files['base']}",
        ],
    )
    whole = load_config(
        "demo",
        [
            *graph,
            f"data.tables_dir={root / 'tables_all'}",
            f"graph.store_dir={root / 'store_all'}",
            f"graph.content_file={files['all']}",
        ],
    )
    for cfg, source in ((config, root / "base.json"), (whole, root / "all.json")):
        import_json(source, cfg.data.tables_dir, cfg.data, progress=False)
        build_graph(cfg.data.tables_dir, cfg.graph, cfg.graph.store_dir, config=cfg)
    return SimpleNamespace(
        root=root,
        config=config,
        whole=whole,
        records=records,
        new=new,
        new_json=root / "new.json",
        content=content,
        new_content=files["new"],
    )
