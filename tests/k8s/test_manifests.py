"""k8s/ as `kubectl apply -k` would send it: valid against the Kubernetes and KubeRay schemas, secure pods,
pinned images, ClusterIP only, token authentication from a Secret, the claims, the network policy, and
entrypoints and presets that exist. No cluster needed: the kustomizations are rendered (conftest.py)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import tomllib
import yaml

from netgpt.cli import build_parser as cli_parser
from netgpt.config import load_config
from netgpt.ray_version import TESTED_RAY

REPO = Path(__file__).resolve().parents[2]
SHARED_TOOLS = REPO.parent / "shared" / "tools"
KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the manifests are checked against (the core kinds' schemas)."""
RAY_KINDS = ("RayCluster", "RayJob")
CLI_SCRIPTS = {"prepare.py": "prepare", "build_graph.py": "build-graph", "convert.py": "convert"}
"""ray_jobs/ scripts that hand their arguments to a `netgpt` subcommand."""
WORKING_DIR = "/home/ray/netgpt"
"""Where the Dockerfile puts the repository (its WORKDIR); the RayJobs ship it as their working_dir."""


# --- what the checks read -----------------------------------------------------------------------------------


def cluster_specs(doc: dict) -> Iterator[tuple[str, dict]]:
    """The RayCluster specs of a document: a RayCluster's own, a RayJob's `rayClusterSpec`."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["kind"] == "RayCluster":
        yield name, doc["spec"]
    elif doc["kind"] == "RayJob" and "rayClusterSpec" in doc["spec"]:
        yield name, doc["spec"]["rayClusterSpec"]


def ray_node_templates(doc: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod template) of the Ray head and worker groups of a document."""
    for name, spec in cluster_specs(doc):
        yield f"{name} head", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"{name} group {group['groupName']}", group["template"]


def pod_templates(doc: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod template) of every pod a document makes: Ray nodes, RayJob submitters, Deployments."""
    yield from ray_node_templates(doc)
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["kind"] == "RayJob":
        # Without a template KubeRay makes a submitter pod of its own, with no securityContext at all.
        yield f"{name} submitter", doc["spec"].get("submitterPodTemplate", {})
    elif doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield name, doc["spec"]["template"]


def image_problem(image: str | None) -> str | None:
    """Why an image reference is not pinned: no tag, or `latest`."""
    if not image:
        return "no image"
    if "@sha256:" in image:
        return None
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag:
        return f"image {image} has no tag (it means latest)"
    if tag == "latest":
        return f"image {image} is tagged latest"
    return None


def security_problems(where: str, template: dict) -> list[str]:
    """Each missing security setting of a pod template, as a sentence naming the pod and the container."""
    spec = template.get("spec", {})
    problems = []
    pod_context = spec.get("securityContext", {})
    if pod_context.get("runAsNonRoot") is not True:
        problems.append(f"{where}: securityContext.runAsNonRoot is not true")
    if not isinstance(pod_context.get("runAsUser"), int) or pod_context["runAsUser"] < 1:
        problems.append(f"{where}: securityContext.runAsUser is not a fixed non-root uid")
    if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: securityContext.seccompProfile is not RuntimeDefault")
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    if not containers:
        problems.append(f"{where}: no containers")
    for container in containers:
        at = f"{where} container {container.get('name')}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation is not false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{at}: capabilities do not drop ALL")
        if context.get("runAsUser") == 0 or context.get("runAsNonRoot") is False or context.get("privileged"):
            problems.append(f"{at}: runs as root or privileged")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"{at}: no {resource} in resources.{kind}")
        gpus = {resources.get(kind, {}).get("nvidia.com/gpu") for kind in ("requests", "limits")}
        if gpus != {None} and len(gpus) != 1:
            problems.append(f"{at}: nvidia.com/gpu requests and limits differ: {gpus}")
        if problem := image_problem(container.get("image")):
            problems.append(f"{at}: {problem}")
        mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        for path in ("/tmp", "/dev/shm"):
            volume = volumes.get(mounts.get(path, ""), {})
            if "emptyDir" not in volume:
                problems.append(f"{at}: {path} is not a writable emptyDir")
    return problems


def _docs(rendered: dict[str, list[dict]]) -> Iterator[tuple[str, dict]]:
    for name, docs in rendered.items():
        for doc in docs:
            yield f"k8s/{name}: {doc['kind']}/{doc['metadata']['name']}", doc


def _package_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


FAST_YAML_RUN = """
import runpy, sys, yaml
if yaml.__with_libyaml__:
    yaml.safe_load = lambda stream: yaml.load(stream, Loader=yaml.CSafeLoader)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""Runs validate-k8s as it is, with PyYAML's C parser in place of the pure-Python one when PyYAML has it:
the tool reads its 2 MB CRD again for each document, 1.2 s a document in Python, 0.2 s in C."""


# --- schemas ------------------------------------------------------------------------------------------------
NEEDS_SHARED = pytest.mark.skipif(
    not (SHARED_TOOLS / "validate-k8s").exists(),
    reason="the KubeRay CRD schemas and their validator (shared/tools beside the repo) are absent here",
)


@NEEDS_SHARED
def test_kuberay_documents_are_valid_against_the_crd_schemas(rendered, tmp_path):
    files, expected = [], 0
    for name, docs in rendered.items():
        path = tmp_path / (name.replace("/", "_") + ".yaml")
        path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
        files.append(str(path))
        expected += sum(doc["kind"] in RAY_KINDS for doc in docs)
    done = _validate_k8s(files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{expected} valid, 0 invalid of {expected} KubeRay documents" in done.stdout


@NEEDS_SHARED
def test_the_crd_check_rejects_an_unknown_field(rendered, tmp_path):
    (job,) = [d for d in rendered["overlays/gpu/jobs"] if d["metadata"]["name"] == "netgpt-train"]
    job = {**job, "spec": {**job["spec"], "shutdownAfterJobFinish": True}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    done = _validate_k8s([str(path)])
    assert done.returncode == 1 and "spec/shutdownAfterJobFinish: unknown field" in done.stdout


def _validate_k8s(files: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", FAST_YAML_RUN, str(SHARED_TOOLS / "validate-k8s"), *files],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_core_kinds_and_every_pod_template_are_valid_kubernetes(rendered):
    """Strict (unknown fields rejected) against the Kubernetes API schema; the pod templates inside the
    KubeRay kinds as PodTemplates. A kind with no schema (a local-config leaking out) fails too."""
    checked = 0
    for where, doc in _docs(rendered):
        if doc["kind"] not in RAY_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
        for at, template in pod_templates(doc):
            if doc["kind"] in RAY_KINDS:
                wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
                try:
                    kubernetes_validate.validate({**wrapped, "template": template}, KUBERNETES_VERSION, True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(f"{where} {at}: {error}")
                checked += 1
    assert checked > 20


def test_the_validator_rejects_an_unknown_field():
    """The core check is strict: a misspelt field fails, it is not dropped."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 1}], "tyep": "ClusterIP"},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


# --- security -----------------------------------------------------------------------------------------------
def test_every_pod_is_secure_and_sized(rendered):
    problems, pods = [], 0
    for where, doc in _docs(rendered):
        for at, template in pod_templates(doc):
            problems += security_problems(f"{where} {at}", template)
            pods += 1
    assert pods >= 20
    assert not problems, "\n".join(problems)


def test_every_ray_node_keeps_idle_workers_for_the_streams_read_tasks(rendered):
    """Each stream's read tasks reserve no CPU; on a node whose CPUs are all reserved Ray would end their
    processes a second after each task, and the next stream would start them anew (docs/cluster.md)."""
    nodes = 0
    for where, doc in _docs(rendered):
        for at, template in ray_node_templates(doc):
            (container,) = template["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert int(env.get("RAY_num_workers_soft_limit", 0)) >= 8, f"{where} {at}"
            nodes += 1
    assert nodes >= 4


def test_every_ray_worker_drains_its_node_before_its_pod_ends(rendered):
    """A worker Pod's preStop hook drains its Ray node (netgpt/train/drain.py), with a deadline inside the
    Pod's grace period, so that a run checkpoints before Kubernetes ends the Pod."""
    groups = 0
    for where, doc in _docs(rendered):
        for name, spec in cluster_specs(doc):
            for group in spec.get("workerGroupSpecs", []):
                pod = group["template"]["spec"]
                (container,) = pod["containers"]
                command = container["lifecycle"]["preStop"]["exec"]["command"]
                assert command[:3] == ["python", "-m", "netgpt.train.drain"], f"{where} {name}"
                deadline = int(command[command.index("--deadline-s") + 1])
                assert 0 < deadline < pod["terminationGracePeriodSeconds"] - 15, f"{where} {name}"
                groups += 1
    assert groups >= 3
    drain_options = subprocess.run(
        [sys.executable, "-m", "netgpt.train.drain", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--deadline-s" in drain_options.stdout, drain_options.stderr


def _base_pod() -> dict:
    docs = yaml.safe_load_all((REPO / "k8s/base/tensorboard.yaml").read_text(encoding="utf-8"))
    (doc,) = [d for d in docs if d and d["kind"] == "Deployment"]
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/netgpt:0.1.0"
    return doc["spec"]["template"]


@pytest.mark.parametrize(
    "breaks, expected",
    [
        (lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda s: s["securityContext"].update(runAsUser=0), "runAsUser"),
        (lambda s: s["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (
            lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "PrivilegeEscalation",
        ),
        (lambda s: s["containers"][0]["securityContext"].pop("capabilities"), "drop ALL"),
        (lambda s: s["containers"][0]["resources"]["limits"].pop("memory"), "no memory in resources.limits"),
        (lambda s: s["containers"][0].update(image="netgpt:latest"), "tagged latest"),
        (lambda s: s["containers"][0].update(image="netgpt"), "no tag"),
        (lambda s: s["volumes"].pop(), "/dev/shm is not a writable emptyDir"),
    ],
)
def test_the_security_check_names_what_is_missing(breaks, expected):
    template = _base_pod()
    assert security_problems("pod", template) == []
    breaks(template["spec"])
    assert any(expected in problem for problem in security_problems("pod", template))


def test_images_are_the_package_version_never_latest(rendered):
    version = _package_version()
    images = {
        container["image"]
        for _, doc in _docs(rendered)
        for _, template in pod_templates(doc)
        for container in template["spec"]["containers"]
    }
    (image,) = images  # one image for every pod, wherever its registry is
    assert image.rsplit("/", 1)[-1] == f"netgpt:{version}", image


def test_services_are_cluster_ip_only(rendered):
    for where, doc in _docs(rendered):
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", where
        for at, spec in cluster_specs(doc):
            head = spec["headGroupSpec"]
            assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{where} {at}"
            assert not head.get("enableIngress"), f"{where} {at}"


def test_token_authentication_is_on_and_its_token_comes_from_a_secret(rendered):
    specs = [(where, spec) for where, doc in _docs(rendered) for _, spec in cluster_specs(doc)]
    assert len(specs) == 2 + 5  # the clusters of the two overlays, and the own-cluster overlay's five jobs
    for where, spec in specs:
        assert spec.get("authOptions", {}).get("mode") == "token", where
        assert spec["authOptions"].get("secretName"), f"{where}: the token must come from a Secret"
    for where, doc in _docs(rendered):
        assert doc["kind"] != "Secret", f"{where}: a token is never written in a manifest"
        for at, template in pod_templates(doc):
            for container in template["spec"]["containers"]:
                for env in container.get("env", []):
                    assert not (env["name"].startswith("RAY_AUTH") and "value" in env), f"{where} {at}"


def test_the_network_policy_lets_only_the_clusters_own_pods_reach_the_ray_pods(rendered):
    def matches(selector: dict, labels: dict) -> bool:
        if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
            return False
        return all(
            (labels.get(e["key"]) in e["values"]) == (e["operator"] == "In")
            for e in selector.get("matchExpressions", [])
        )

    for name in ("overlays/cpu-smoke", "overlays/gpu", "overlays/gpu-own-cluster"):
        docs = rendered[name] + rendered.get(f"{name}/jobs", [])
        (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        selected = policy["spec"]["podSelector"]
        ray_pods = [t for d in docs for _, t in ray_node_templates(d)]
        submitters = [d["spec"]["submitterPodTemplate"] for d in docs if d["kind"] == "RayJob"]
        assert ray_pods and submitters, name
        assert all(matches(selected, t["metadata"]["labels"]) for t in ray_pods), name
        own, operator = policy["spec"]["ingress"]
        (peer,) = own["from"]
        assert "namespaceSelector" not in peer and "ports" not in own  # this namespace's pods, every Ray port
        assert all(matches(peer["podSelector"], t["metadata"]["labels"]) for t in ray_pods + submitters)
        tensorboard = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"]["metadata"][
            "labels"
        ]
        assert not matches(peer["podSelector"], tensorboard) and not matches(selected, tensorboard)
        (operator_peer,) = operator["from"]
        assert operator_peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}
        assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]


# --- storage ------------------------------------------------------------------------------------------------
def test_claims_state_their_access_and_take_the_class_from_the_overlay(rendered):
    classes = {}
    for name in ("overlays/cpu-smoke", "overlays/gpu"):
        claims = {d["metadata"]["name"]: d for d in rendered[name] if d["kind"] == "PersistentVolumeClaim"}
        assert claims["netgpt-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claims["netgpt-models"]["spec"]["accessModes"] == ["ReadOnlyMany"]
        classes[name] = {claim["spec"]["storageClassName"] for claim in claims.values()}
        base = yaml.safe_load_all((REPO / "k8s/base/storage.yaml").read_text(encoding="utf-8"))
        assert not classes[name] & {d["spec"]["storageClassName"] for d in base if d}, "the overlay sets it"


def test_the_models_claim_is_mounted_read_only_everywhere(rendered):
    mounts = 0
    for where, doc in _docs(rendered):
        for at, template in pod_templates(doc):
            volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
            for container in template["spec"]["containers"]:
                for mount in container.get("volumeMounts", []):
                    claim = volumes[mount["name"]].get("persistentVolumeClaim", {})
                    if claim.get("claimName") == "netgpt-models":
                        assert mount.get("readOnly") is True and claim.get("readOnly") is True, (
                            f"{where} {at}"
                        )
                        mounts += 1
    assert mounts >= 6


# --- what the jobs run --------------------------------------------------------------------------------------
def _jobs(rendered: dict[str, list[dict]]) -> list[tuple[str, dict]]:
    return [(where, doc) for where, doc in _docs(rendered) if doc["kind"] == "RayJob"]


def test_every_overlay_has_a_job_for_each_step(rendered):
    steps = {"prepare", "build-graph", "train", "convert", "evaluate"}
    for name in ("overlays/cpu-smoke/jobs", "overlays/gpu/jobs", "overlays/gpu-own-cluster"):
        jobs = [d for d in rendered[name] if d["kind"] == "RayJob"]
        assert {d["metadata"]["labels"]["netgpt.io/step"] for d in jobs} == steps, name


def test_entrypoints_run_ray_jobs_scripts_with_presets_that_exist(rendered):
    presets = {path.stem for path in (REPO / "netgpt" / "configs").glob("*.yaml")}
    entrypoints = [(where, doc["spec"]["entrypoint"]) for where, doc in _jobs(rendered)]
    entrypoints += [
        (where, doc["metadata"]["annotations"]["netgpt.io/plan-entrypoint"])
        for where, doc in _docs(rendered)
        if doc["kind"] == "RayCluster"
    ]
    for where, entrypoint in entrypoints:
        words = shlex.split(entrypoint)
        assert words[0] == "python" and words[1].startswith("ray_jobs/"), where
        script = REPO / words[1]
        assert script.is_file(), f"{where}: {words[1]} does not exist"
        if "--config" in words:
            preset = words[words.index("--config") + 1]
            assert preset in presets, f"{where}: no preset {preset!r} (netgpt/configs has {sorted(presets)})"
            overrides = [w for w in words[2:] if "=" in w and not w.startswith("-")]
            load_config(preset, overrides)  # a misspelt override key fails here
        if script.name in CLI_SCRIPTS:
            cli_parser().parse_args([CLI_SCRIPTS[script.name], *words[2:]])  # an unknown flag exits


def test_jobs_follow_kuberays_own_admission_rules(rendered):
    """What the operator's webhook/validation refuses beyond the CRD schema (KubeRay's ValidateRayJobSpec
    and ValidateRayClusterSpec), and the runtime env the job server gets."""
    for where, doc in _jobs(rendered):
        spec, name = doc["spec"], doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47, where
        for field in (
            "shutdownAfterJobFinishes",
            "ttlSecondsAfterFinished",
            "backoffLimit",
            "activeDeadlineSeconds",
        ):
            assert field in spec, f"{where}: no {field}"
        assert spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] >= 0, where
        if not spec["shutdownAfterJobFinishes"]:
            assert spec["ttlSecondsAfterFinished"] == 0, where
        if spec.get("clusterSelector"):
            assert spec["clusterSelector"].get("ray.io/cluster"), where
            assert spec["backoffLimit"] == 0, f"{where}: KubeRay refuses retries on a selected cluster"
            assert "rayClusterSpec" not in spec, where
        else:
            assert "rayClusterSpec" in spec, f"{where}: neither a clusterSelector nor a cluster of its own"
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert runtime_env["working_dir"] == WORKING_DIR, where
    selectable = {d["metadata"]["name"] for _, d in _docs(rendered) if d["kind"] == "RayCluster"}
    for where, doc in _jobs(rendered):
        if doc["spec"].get("clusterSelector"):
            assert doc["spec"]["clusterSelector"]["ray.io/cluster"] in selectable, where


def test_clusters_run_the_tested_ray_with_consistent_replicas(rendered):
    major, minor = TESTED_RAY
    for where, doc in _docs(rendered):
        for at, spec in cluster_specs(doc):
            assert str(spec["rayVersion"]).startswith(f"{major}.{minor}."), f"{where} {at}"
            for group in spec.get("workerGroupSpecs", []):
                assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], f"{where} {at}"


def test_the_working_dir_is_where_the_dockerfile_puts_the_repository():
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^WORKDIR (\S+)$", dockerfile, flags=re.M) == [WORKING_DIR]


def test_pods_run_as_the_images_user(rendered):
    """The uid and gid every pod names are the image's USER (the Ray image's `ray`), which owns the
    installed package and its home."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.M)
    for where, doc in _docs(rendered):
        for at, template in pod_templates(doc):
            context = template["spec"]["securityContext"]
            assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user, f"{where} {at}"
