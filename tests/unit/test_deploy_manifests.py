"""deploy/k8s: every manifest parses, has the kinds the operations guide promises, and agrees with
the code it deploys (serve's flags, the token file format, the repo's topology and policies, the
bootstrap `meshctl bootstrap` prints; the sidecar bootstrap is validated by the real Envoy)."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from meshctl.api.auth import TokenTable
from meshctl.bootstrap import envoy_bootstrap
from meshctl.cli import app
from meshctl.local.envoy import envoy_binary
from meshctl.model import TopologyFile

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def load_all() -> dict[str, list[dict[str, Any]]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(K8S.glob("*.yaml"))}


def find(kind: str, name: str) -> dict[str, Any]:
    for docs in load_all().values():
        for d in docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def test_every_manifest_parses_and_names_its_kind() -> None:
    kinds: Counter[str] = Counter()
    for name, docs in load_all().items():
        assert docs, f"{name} is empty"
        for d in docs:
            assert d.get("apiVersion") and d.get("kind"), (name, d)
            if d["kind"] != "Kustomization":
                assert d["metadata"].get("name"), (name, d)
            kinds[d["kind"]] += 1
    assert set(kinds) == {
        "Namespace", "Secret", "ConfigMap", "Service", "StatefulSet", "Deployment",
        "PodDisruptionBudget", "NetworkPolicy", "Kustomization",
    }  # fmt: skip
    assert kinds["Service"] >= 3  # API, xDS, Redis


def test_kustomization_applies_every_manifest() -> None:
    (kust,) = load_all()["kustomization.yaml"]
    listed = set(kust["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_control_plane_replicas_are_ready_on_readyz_and_share_the_redis() -> None:
    dep = find("Deployment", "meshctl")
    assert dep["spec"]["replicas"] >= 2
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["args"][0] == "serve"
    flags = dict(a.removeprefix("--").split("=", 1) for a in c["args"][1:])
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    known = {opt.removeprefix("--") for p in serve.params for opt in p.opts}
    assert set(flags) <= known, set(flags) - known
    assert flags["origin"] == "$(POD_NAME)"
    redis = find("StatefulSet", "redis")
    host = f"{redis['metadata']['name']}-0.{redis['spec']['serviceName']}.{redis['metadata']['namespace']}"
    assert flags["store"].startswith(f"redis://{host}.svc.cluster.local:6379/")
    # Mounted files are the ones the flags name.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert flags["topology"].startswith(mounts["topology"] + "/")
    assert flags["policies"] == mounts["policies"]
    assert flags["tokens"].startswith(mounts["tokens"] + "/")
    # Both Services reach the pods, on ports the container declares.
    ports = {p["name"] for p in c["ports"]}
    for svc_name in ("meshctl-api", "meshctl-xds"):
        svc = find("Service", svc_name)
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


def test_redis_keeps_an_aof_on_a_volume_and_never_evicts() -> None:
    sts = find("StatefulSet", "redis")
    assert sts["spec"]["replicas"] == 1  # one primary: the store's Lua scripts need it
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    conf = dict(
        line.split(None, 1)
        for line in find("ConfigMap", "meshctl-redis")["data"]["redis.conf"].splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes" and conf["appendfsync"] in ("always", "everysec")
    assert conf["dir"] == "/data" and conf["maxmemory-policy"] == "noeviction"


def test_config_maps_carry_the_repository_topology_and_policies(tmp_path: Path) -> None:
    topo = find("ConfigMap", "meshctl-topology")["data"]["topology.yaml"]
    assert topo == (ROOT / "deploy" / "topology.yaml").read_text()
    TopologyFile.model_validate(yaml.safe_load(topo))
    policies = find("ConfigMap", "meshctl-policies")["data"]
    assert policies == {p.name: p.read_text() for p in (ROOT / "policies").glob("*.yaml")}
    secret = find("Secret", "meshctl-tokens")["stringData"]["tokens.yaml"]
    (tmp_path / "tokens.yaml").write_text(secret)
    tokens = TokenTable.load_file(tmp_path / "tokens.yaml")
    assert len(tokens) >= 2
    assert all(t.startswith("REPLACE-ME") for t in yaml.safe_load(secret)["tokens"])


def _sidecar_bootstrap() -> dict[str, Any]:
    return dict(yaml.safe_load(find("ConfigMap", "checkout-envoy")["data"]["envoy.yaml"]))


def test_sidecar_bootstrap_is_meshctl_bootstrap_with_dns_and_fast_reconnect() -> None:
    expected = envoy_bootstrap(
        "checkout",
        "checkout",
        "eu-west-1a",
        region="eu-west",
        xds_host="meshctl-xds.meshctl.svc.cluster.local",
        xds_port=18000,
        admin_port=15000,
        listener_port=15001,
    )
    expected["static_resources"]["clusters"][0]["type"] = "STRICT_DNS"
    grpc = expected["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]
    grpc["retry_policy"] = {"retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}}
    assert _sidecar_bootstrap() == expected
    svc = find("Service", "meshctl-xds")
    assert svc["spec"]["ports"][0]["port"] == 18000


def test_envoy_accepts_the_sidecar_bootstrap(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(_sidecar_bootstrap()))
    run = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", ["namespace.yaml", "controlplane.yaml", "redis.yaml", "tokens-secret.yaml"])
def test_control_plane_objects_live_in_their_namespace(name: str) -> None:
    for d in load_all()[name]:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "meshctl", (name, d["kind"])
