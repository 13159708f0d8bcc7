"""deploy/k8s: every overlay renders (our renderer; `kubectl kustomize` agrees where kubectl exists),
every built-in resource passes kubernetes-validate (strict), the custom resources pass structural
schemas, and the pieces reference each other correctly. Nothing is applied to a cluster."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serendip.stack.kustomize import KustomizeError, merge_patch, render
from tests.stack.conftest import REPO
from tests.stack.crd_schemas import SCHEMAS

K8S = REPO / "deploy/k8s"
TARGETS = ["overlays/cpu", "overlays/gpu", "ray"]
K8S_VERSION = "1.31.0"
# Made outside these manifests: the Redis URL (operator/managed Redis; the cpu overlay ships a dev one)
# and an optional Hugging Face token.
EXTERNAL = {("Secret", "serendip-redis"), ("Secret", "serendip-hf-token"), ("ConfigMap", "serendip-vllm")}
PUSHGATEWAY_URL = "http://serendip-pushgateway.serendip.svc.cluster.local:9091"


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return r["kind"], r["metadata"]["name"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    return {t: {_key(r): r for r in render(K8S / t)} for t in TARGETS}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl binary to compare with")
@pytest.mark.parametrize("target", TARGETS)
def test_renderer_agrees_with_kubectl_kustomize(target, rendered):
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, check=True
    )
    theirs = {_key(r): r for r in yaml.safe_load_all(out.stdout) if r}
    assert theirs == rendered[target]


@pytest.mark.parametrize("target", TARGETS)
def test_resources_validate(target, rendered):
    for key, r in rendered[target].items():
        if r["kind"] in SCHEMAS:
            jsonschema.validate(r, SCHEMAS[r["kind"]])
        else:
            kubernetes_validate.validate(r, K8S_VERSION, strict=True)
        assert r["kind"] == "Namespace" or r["metadata"]["namespace"] == "serendip", key


def test_validation_catches_mistakes(rendered):
    dep = copy.deepcopy(rendered["overlays/cpu"][("Deployment", "serendip-retrieval")])
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"  # must be int
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    dep = copy.deepcopy(rendered["overlays/cpu"][("Deployment", "serendip-retrieval")])
    dep["spec"]["replica"] = 3  # typo: strict mode rejects unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    sm = copy.deepcopy(rendered["overlays/cpu"][("ServiceMonitor", "serendip-retrieval")])
    del sm["spec"]["endpoints"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sm, SCHEMAS["ServiceMonitor"])


def test_renderer_refuses_what_it_does_not_support(tmp_path: Path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas:\n  - name: x\n    count: 2\n")
    with pytest.raises(KustomizeError, match="not supported"):
        render(tmp_path)
    assert merge_patch({"c": [{"name": "a", "x": 1}]}, {"c": [{"name": "a", "y": 2}, {"name": "b"}]}) == {
        "c": [{"name": "a", "x": 1, "y": 2}, {"name": "b"}]
    }


def test_retrieval_headless_service_probes_hpa_pdb(rendered):
    res = rendered["overlays/cpu"]
    dep = res[("Deployment", "serendip-retrieval")]
    svc = res[("Service", "serendip-retrieval")]
    pod = dep["spec"]["template"]
    assert svc["spec"]["clusterIP"] == "None"  # headless: clients balance per call over pod IPs
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9101}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == 50051, probe  # native gRPC probes
    assert c["image"] == "ghcr.io/serendip/serendip:cpu-0.1.0"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    hpa = res[("HorizontalPodAutoscaler", "serendip-retrieval")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "serendip-retrieval",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = res[("PodDisruptionBudget", "serendip-retrieval")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert "HTTP/2" in (K8S / "base/retrieval.yaml").read_text()


def test_refresh_cronjob_forbids_overlap(rendered):
    for target in ("overlays/cpu", "overlays/gpu"):
        cj = rendered[target][("CronJob", "serendip-refresh")]
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        c = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        if target == "overlays/gpu":
            assert env["SERENDIP_INTEREST__BACKEND"]["value"] == "openai"
            assert "serendip-vllm" in env["SERENDIP_INTEREST__OPENAI__BASE_URL"]["value"]


def test_vllm_gpu_and_model_cache(rendered):
    res = rendered["overlays/gpu"]
    dep = res[("Deployment", "serendip-vllm")]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["image"].startswith("vllm/vllm-openai:")
    claim = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache")
    assert ("PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"]) in res
    cm = res[("ConfigMap", "serendip-vllm")]
    assert {"MODEL", "LORA_NAME", "LORA_PATH", "REQUEST_MODEL"} <= set(cm["data"])
    assert ("Deployment", "serendip-vllm") not in rendered["overlays/cpu"]


def _refs(node: Any) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        for field, kind in (
            ("configMapRef", "ConfigMap"),
            ("configMapKeyRef", "ConfigMap"),
            ("secretRef", "Secret"),
            ("secretKeyRef", "Secret"),
        ):
            if field in node and not node[field].get("optional"):
                out.add((kind, node[field]["name"]))
        if "persistentVolumeClaim" in node:
            out.add(("PersistentVolumeClaim", node["persistentVolumeClaim"]["claimName"]))
        for v in node.values():
            out |= _refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= _refs(v)
    return out


@pytest.mark.parametrize("target", ["overlays/cpu", "overlays/gpu"])
def test_references_resolve(target, rendered):
    res = rendered[target]
    missing = set().union(*(_refs(r) for r in res.values())) - set(res) - EXTERNAL
    assert not missing, missing
    if target == "overlays/cpu":  # the dev overlay is complete on its own
        assert ("Secret", "serendip-redis") in res
    for key, sm in res.items():
        if key[0] != "ServiceMonitor":
            continue
        svcs = [
            s
            for k, s in res.items()
            if k[0] == "Service"
            and sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()
        ]
        assert len(svcs) == 1, key
        assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svcs[0]["spec"]["ports"]}


def test_dashboards_configmap_and_prometheus_rule(rendered):
    res = rendered["overlays/cpu"]
    cm = res[("ConfigMap", "serendip-grafana-dashboards")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    for name, text in cm["data"].items():
        assert json.loads(text)["uid"] and (K8S / "base/monitoring/dashboards" / name).read_text() == text
    assert ("PrometheusRule", "serendip") in res


def test_rayjob_runs_the_ray_engine(rendered):
    import shlex

    import typer

    from serendip.cli import app

    job = rendered["ray"][("RayJob", "serendip-refresh")]
    program, command, *args = shlex.split(job["spec"]["entrypoint"])
    assert program == "serendip" and command == "refresh"
    # The real CLI parses the entrypoint (an unknown or misspelt flag raises here).
    params = typer.main.get_command(app).commands[command].make_context(command, args).params
    assert params["engine"] == "ray"
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["SERENDIP_INTEREST__REFRESH__PUSHGATEWAY_URL"] == PUSHGATEWAY_URL
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    # Shards of one run land on many pods: checkpoints and the description cache must be shared.
    mounts = {m["name"]: m["mountPath"] for m in workers["containers"][0]["volumeMounts"]}
    assert mounts["interest-state"] == "/data/interest"
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in workers["volumes"]}
    assert claims["interest-state"] == "serendip-interest-state"
    images = {
        c["image"]
        for g in [
            job["spec"]["rayClusterSpec"]["headGroupSpec"],
            *job["spec"]["rayClusterSpec"]["workerGroupSpecs"],
        ]
        for c in g["template"]["spec"]["containers"]
    }
    assert images == {"ghcr.io/serendip/serendip:cpu-ray-0.1.0"}


@pytest.mark.parametrize("target", ["overlays/cpu", "overlays/gpu"])
def test_refresh_cronjob_pushes_to_the_pushgateway_service(target, rendered):
    from urllib.parse import urlsplit

    from interest_service.config import RefreshConfig

    res = rendered[target]
    cj = res[("CronJob", "serendip-refresh")]
    c = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in c["envFrom"]:
        if "configMapRef" in source:
            env.update(res[("ConfigMap", source["configMapRef"]["name"])]["data"])
    url = env["SERENDIP_INTEREST__REFRESH__PUSHGATEWAY_URL"]
    assert url == PUSHGATEWAY_URL and RefreshConfig(pushgateway_url=url).pushgateway_url == url
    # The URL names the Service in this namespace, on a port it exposes, backed by the Deployment.
    host = urlsplit(url)
    name, namespace = host.hostname.split(".")[:2]
    svc = res[("Service", name)]
    assert namespace == svc["metadata"]["namespace"]
    port = next(p for p in svc["spec"]["ports"] if p["port"] == host.port)
    pod = res[("Deployment", name)]["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("prom/pushgateway:v")
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    store = next(a for a in container["args"] if a.startswith("--persistence.file="))
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(store.split("=", 1)[1].startswith(m + "/") for m in mounts)
    sm = res[("ServiceMonitor", name)]
    # honorLabels: the pushed job="serendip_refresh" survives (SerendipRefreshStale selects it)
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
