"""The resource plan (netgpt.train.plan) of the run each rendered Ray cluster of k8s/ is for fits its head and
worker groups: the plan check of `netgpt plan`, applied to the manifests instead of a running cluster."""

from __future__ import annotations

import shlex

from netgpt.config import load_config
from netgpt.train.plan import ResourcePlan

SUFFIXES = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9}


def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity (`32`, `500m`, `16Gi`, `1G`) as a number."""
    text = str(text)
    for suffix, factor in sorted(SUFFIXES.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def ray_pod(group: dict) -> dict[str, float]:
    """What Ray sees of one pod of a group: CPUs (`num-cpus` when set), GPUs, and its memory split as Ray
    does by default: 30 % object store (at most 200 GB), the rest the `memory` resource."""
    container = group["template"]["spec"]["containers"][0]
    requests = container["resources"]["requests"]
    params = group.get("rayStartParams", {})
    memory = quantity(requests["memory"])
    store = min(0.3 * memory, 200e9)
    return {
        "CPU": quantity(params.get("num-cpus", requests["cpu"])),
        "GPU": quantity(params.get("num-gpus", requests.get("nvidia.com/gpu", 0))),
        "memory": memory - store,
        "object_store_memory": store,
    }


def sized_clusters(rendered: dict[str, list[dict]]) -> list[tuple[str, str, dict]]:
    """(where, the training entrypoint, cluster spec) of every rendered cluster a training run uses: a
    RayCluster (its `netgpt.io/plan-entrypoint`) and a train RayJob bringing its own cluster."""
    found = []
    for name, docs in rendered.items():
        for doc in docs:
            where = f"k8s/{name}: {doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "RayCluster":
                found.append(
                    (where, doc["metadata"]["annotations"]["netgpt.io/plan-entrypoint"], doc["spec"])
                )
            elif (
                doc["kind"] == "RayJob"
                and "rayClusterSpec" in doc["spec"]
                and "train.py" in doc["spec"]["entrypoint"]
            ):
                found.append((where, doc["spec"]["entrypoint"], doc["spec"]["rayClusterSpec"]))
    return found


def test_each_cluster_is_sized_for_the_train_job_that_runs_on_it(rendered):
    """The annotation the plan is checked for is the entrypoint the overlay's train job runs."""
    for overlay in ("cpu-smoke", "gpu"):
        (cluster,) = [d for d in rendered[f"overlays/{overlay}"] if d["kind"] == "RayCluster"]
        (train,) = [
            d for d in rendered[f"overlays/{overlay}/jobs"] if d["metadata"]["name"] == "netgpt-train"
        ]
        planned = shlex.split(cluster["metadata"]["annotations"]["netgpt.io/plan-entrypoint"])
        run = shlex.split(train["spec"]["entrypoint"])
        assert sorted(planned) == sorted(w for w in run if not w.startswith(("data.", "graph.store_dir"))), (
            overlay
        )


def test_the_plan_of_each_clusters_run_fits_its_groups(rendered, qwen2_7b_dir):
    clusters = sized_clusters(rendered)
    assert len(clusters) == 3  # cpu-smoke, gpu, and gpu-own-cluster's train job
    for where, entrypoint, cluster in clusters:
        pods = [(ray_pod(cluster["headGroupSpec"]), 1)]
        pods += [(ray_pod(group), int(group["replicas"])) for group in cluster.get("workerGroupSpecs", [])]
        total = {key: sum(pod[key] * count for pod, count in pods) for key in pods[0][0]}
        words = shlex.split(entrypoint)
        overrides = [w for w in words if "=" in w and not w.startswith("-")]
        if "--all-gpus" in words:  # ray_jobs/train.py: one Train worker per GPU of the cluster
            overrides += [f"train.num_workers={int(total['GPU'])}", "train.use_gpu=true"]
        preset = words[words.index("--config") + 1]
        if load_config(preset, overrides).model.llm_path:  # a preset naming an LLM folder: Qwen2-7B's shape
            overrides.append(f"model.llm_path={qwen2_7b_dir}")
        config = load_config(preset, overrides)
        plan = ResourcePlan.of(config)
        shortfalls = plan.check(total)
        assert not shortfalls, f"{where}: the run " + "; ".join(s.message() for s in shortfalls)
        # Sampler actors start before the Train workers and may all land on a GPU pod: the pod's Train
        # workers must still find their CPUs there.
        for pod, _ in pods:
            if pod["GPU"]:
                workers = pod["GPU"] * plan.cpus_per_worker
                samplers = plan.num_samplers * plan.sampler_num_cpus
                assert workers + samplers <= pod["CPU"], (
                    f"{where}: a GPU pod has {pod['CPU']:g} CPU, its {pod['GPU']:g} Train workers need "
                    f"{workers:g} and the sampler actors may take {samplers:g} there first"
                )


def test_the_plan_check_fails_a_cluster_too_small(rendered, qwen2_7b_dir):
    """The same check on the gpu cluster with half its worker CPUs names the missing CPUs."""
    (cluster,) = [d for d in rendered["overlays/gpu"] if d["kind"] == "RayCluster"]
    (group,) = cluster["spec"]["workerGroupSpecs"]
    pod = ray_pod(group)
    pod["CPU"] /= 4
    config = load_config("xs_video", ["train.num_workers=4", f"model.llm_path={qwen2_7b_dir}"])
    shortfalls = ResourcePlan.of(config).check(pod)
    assert any("CPU" in s.message() for s in shortfalls)
