"""Every `meshctl` operator verb against a live `meshctl serve` subprocess, in both output modes.

Table output is checked for what a person looks for; `--output json` is parsed and checked
field by field. One server serves the module (tests use their own ids, so order does not matter
except that `test_policy_verbs` restores the policies it replaces).
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import networkx as nx
import pytest
from conftest_operators import (
    AGENT_TOKEN,
    CAPABILITY,
    MESHCTL,
    OPERATOR_TOKEN,
    Cli,
    ServeProcess,
    provider_file,
    serve,  # noqa: F401 (fixture)
    start_serve,
)
from harness import EnvoyProcess
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli(serve: ServeProcess) -> Cli:  # noqa: F811
    return Cli(serve)


@pytest.fixture(scope="module")
def fleet(serve: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> list[str]:  # noqa: F811
    """Providers every contract test can use: Dublin (two zones) and Frankfurt."""
    tmp = tmp_path_factory.mktemp("fleet")
    c = Cli(serve)
    ids = []
    for pid, zone, port in (("fleet-dub-a", "eu-west-1a", 9101), ("fleet-dub-b", "eu-west-1b", 9102),
                            ("fleet-fra", "eu-central-1a", 9103)):  # fmt: skip
        c.json("providers", "register", str(provider_file(tmp, pid, zone, capacity=1000, port=port)))
        ids.append(pid)
    return ids


def _propose(cli: Cli, consumer: str, rps: float, *extra: str, token: str = AGENT_TOKEN) -> dict[str, Any]:
    return cli.json(
        "contracts", "propose", "--consumer", consumer, "--capability", CAPABILITY, "--zone", "eu-west-1a",
        "--rps", str(rps), "--p99", "100", "--duration", "600", *extra, token=token,
    )  # fmt: skip


# -- providers ----------------------------------------------------------------------------------------------
def test_provider_verbs(cli: Cli, tmp_path: Path) -> None:
    out = cli.table("providers", "register", str(provider_file(tmp_path, "prov-static", "eu-west-1a")))
    assert "prov-static" in out and "static" in out
    leased = cli.json(
        "providers",
        "register",
        str(provider_file(tmp_path, "prov-lease", "eu-central-1b", ttl_s=30, port=9001)),
        token=AGENT_TOKEN,
    )
    assert leased["id"] == "prov-lease" and leased["region"] == "eu-central" and leased["ttl_s"] == 30
    assert leased["expires_at"] == pytest.approx(time.time() + 30, abs=5)

    listed = cli.json("providers", "list")
    assert {"prov-static", "prov-lease"} <= {p["id"] for p in listed}
    assert {p["id"] for p in cli.json("providers", "list", "--capability", "no-such-capability")} == set()
    table = cli.table("providers", "list")
    assert "prov-static" in table and "prov-lease" in table and "eu-central-1b" in table

    got = cli.json("providers", "get", "prov-lease")
    assert got["capacity_rps"] == 200 and got["endpoints"][0]["port"] == 9001
    assert "prov-lease" in cli.table("providers", "get", "prov-lease")

    time.sleep(0.05)
    beat = cli.json("providers", "heartbeat", "prov-lease", token=AGENT_TOKEN)
    assert beat["expires_at"] > leased["expires_at"]
    assert "prov-lease" in cli.table("providers", "heartbeat", "prov-lease")

    assert cli.json("providers", "remove", "prov-lease") == {"removed": "prov-lease"}
    assert "prov-static deregistered" in cli.table("providers", "remove", "prov-static")
    gone = cli.fails("providers", "get", "prov-lease")
    assert gone.exit_code == 1 and "404" in gone.stderr and "not_found" in gone.stderr


def test_provider_register_refuses_unknown_zone(cli: Cli, tmp_path: Path) -> None:
    bad = cli.fails("providers", "register", str(provider_file(tmp_path, "prov-x", "mars-1a")))
    assert "422" in bad.stderr and "unknown zone" in bad.stderr and "(zone)" in bad.stderr


# -- contracts -------------------------------------------------------------------------------------------------
def test_contract_lifecycle_verbs(cli: Cli, fleet: list[str], tmp_path: Path) -> None:
    table = cli.table(
        "contracts", "propose", "--consumer", "cli-shop", "--capability", CAPABILITY, "--zone", "eu-west-1a",
        "--rps", "40", "--p99", "100", "--max-cost", "2", token=AGENT_TOKEN,
    )  # fmt: skip
    assert "admitted" in table and "cli-shop" in table

    d = _propose(cli, "cli-shop", 50)
    assert d["outcome"] == "admitted" and not d["dry_run"]
    cid = d["contract"]["id"]
    shares = d["contract"]["allocation"]["shares"]
    assert sum(s["weight"] for s in shares) == 100 and {s["provider_id"] for s in shares} <= set(fleet)

    what_if = _propose(cli, "cli-whatif", 30, "--dry-run")
    assert what_if["dry_run"] is True and what_if["outcome"] == "admitted"
    assert "cli-whatif" not in {c["request"]["consumer"] for c in cli.json("contracts", "list")}

    request = tmp_path / "contract.yaml"
    request.write_text(
        "consumer: cli-file\nconsumer_zone: eu-west-1a\ncapability: graph-analysis\n"
        "sla: {p99_latency_ms: 100, rps: 10}\nduration_s: 600\nlabels: {data_class: pii}\n"
    )
    from_file = cli.json("contracts", "propose", str(request), token=AGENT_TOKEN)
    assert from_file["outcome"] == "admitted" and from_file["contract"]["request"]["labels"] == {
        "data_class": "pii"
    }

    mine = cli.json("contracts", "list", "--state", "active", token=AGENT_TOKEN)
    assert cid in {c["id"] for c in mine} and all(c["state"] == "active" for c in mine)
    assert cid in cli.table("contracts", "list")

    got = cli.json("contracts", "get", cid)
    assert got["state"] == "active" and got["request"]["sla"]["rps"] == 50
    detail = cli.table("contracts", "get", cid)
    assert f"allocation of {cid}" in detail and "expected p99" in detail

    renewed = cli.json("contracts", "renew", cid, "--duration", "900", token=AGENT_TOKEN)
    assert renewed["expires_at"] == pytest.approx(time.time() + 900, abs=10)
    assert renewed["events"][-1]["kind"] == "renew"
    assert cid in cli.table("contracts", "renew", cid, token=AGENT_TOKEN)

    why = cli.json("contracts", "explain", cid)
    assert why["contract"]["id"] == cid and why["candidates"]
    assert {c["provider"] for c in why["candidates"]} >= set(fleet)
    assert cli.json("explain", cid)["contract"]["id"] == cid
    explained = cli.table("explain", cid)
    assert f"explain {cid}" in explained and "candidates" in explained and "fleet-dub-a" in explained
    assert "candidates" in cli.table("contracts", "explain", cid)

    revoked = cli.json("contracts", "revoke", cid, token=AGENT_TOKEN)
    assert revoked["state"] == "revoked"
    other = from_file["contract"]["id"]
    assert "revoked" in cli.table("contracts", "revoke", other, token=AGENT_TOKEN)
    again = cli.fails("contracts", "revoke", cid, token=AGENT_TOKEN)
    assert "409" in again.stderr


def test_approval_verbs(cli: Cli, fleet: list[str]) -> None:
    # 60 rps at a bid of 100/1k commits a spend of 6000 > 5000: spend-escalation holds it for a human.
    pending = _propose(cli, "cli-bigspender", 60, "--max-cost", "100")
    assert pending["outcome"] == "pending_approval"
    cid = pending["contract"]["id"]
    assert "pending" in cli.table("contracts", "get", cid)

    refused = cli.fails("contracts", "approve", cid, "--reason", "self-service", token=AGENT_TOKEN)
    assert "403" in refused.stderr and "operator" in refused.stderr
    approved = cli.json("contracts", "approve", cid, "--reason", "incident INC-42")
    assert approved["state"] == "active"
    assert any("incident INC-42" in r for r in approved["reasons"])

    second = _propose(cli, "cli-bigspender-2", 60, "--max-cost", "100")["contract"]["id"]
    rejected_table = cli.table("contracts", "reject", second, "--reason", "not this quarter")
    assert "rejected" in rejected_table
    third = _propose(cli, "cli-bigspender-3", 60, "--max-cost", "100")["contract"]["id"]
    rejected = cli.json("contracts", "reject", third, "--reason", "budget")
    assert rejected["state"] == "rejected"
    assert "409" in cli.fails("contracts", "approve", cid, "--reason", "twice").stderr  # already active
    approved_table = cli.table(
        "contracts", "approve", _propose(cli, "cli-bigspender-4", 60, "--max-cost", "100")["contract"]["id"],
        "--reason", "ok",
    )  # fmt: skip
    assert "active" in approved_table


# -- proxies (a real Envoy) ------------------------------------------------------------------------------------
@pytest.fixture
def envoy(serve: ServeProcess) -> Iterator[EnvoyProcess]:  # noqa: F811
    proc = EnvoyProcess.for_node(
        "cli-envoy-1", serve.xds_port, service="cli-shop", zone="eu-west-1a", region="eu-west"
    )
    try:
        yield proc.start()
    finally:
        proc.stop()


def test_proxy_verbs(cli: Cli, fleet: list[str], envoy: EnvoyProcess) -> None:
    _propose(cli, "cli-shop", 5)
    deadline = time.monotonic() + 20
    mine: dict[str, Any] = {}
    while time.monotonic() < deadline:
        mine = next((p for p in cli.json("proxies", "status") if p["node"]["id"] == "cli-envoy-1"), {})
        if mine.get("sync") == "synced":
            break
        time.sleep(0.2)
    assert mine.get("sync") == "synced", f"{mine}\n{envoy.logs()}"
    assert mine["node"]["cluster"] == "cli-shop" and mine["node"]["zone"] == "eu-west-1a"
    status = cli.table("proxies", "status")
    assert "cli-envoy-1" in status and "synced" in status and "SYNCED" in status

    config = json.loads(cli.table("proxies", "config", "cli-envoy-1"))
    assert config["versions"] == mine["expected"]
    assert config["resources"]["listeners"] and config["resources"]["routes"]
    assert cli.json("proxies", "config", "cli-envoy-1")["versions"] == config["versions"]
    assert "404" in cli.fails("proxies", "config", "no-such-node").stderr
    assert "403" in cli.fails("proxies", "status", token=AGENT_TOKEN).stderr


# -- topology --------------------------------------------------------------------------------------------------
def test_topology_verbs(cli: Cli, tmp_path: Path) -> None:
    start = cli.json("topology", "show")
    assert start["cause"] == "current" and len(start["zones"]) == 8
    shown = cli.table("topology", "show")
    assert f"topology version {start['version']}" in shown and "eu-central-1a" in shown

    cli.json(
        "providers", "register", str(provider_file(tmp_path, "topo-eph", "us-east-1b", ttl_s=60, port=9200))
    )
    v_with = cli.json("topology", "show")["version"]
    time.sleep(0.05)
    cli.json("providers", "remove", "topo-eph")
    v_after = cli.json("topology", "show")["version"]
    assert v_after > v_with

    past = cli.json("topology", "show", "--version", str(v_with))
    assert "topo-eph" in {p["id"] for p in past["providers"]}
    assert "topo-eph" not in {p["id"] for p in cli.json("topology", "show")["providers"]}
    at = cli.json("topology", "show", "--at", str(past["at"]))
    assert at["version"] >= v_with and at["at"] == past["at"]
    assert "topo-eph" in cli.table("topology", "show", "--version", str(v_with))

    hist = cli.json("topology", "history")
    assert [h["version"] for h in hist] == sorted(h["version"] for h in hist)
    assert hist[0]["cause"] in ("topology file loaded", "control plane started")
    assert "provider deregistered" in cli.table("topology", "history")
    recent = cli.json("topology", "history", "--since", "10m")
    assert recent and all(h["at"] >= time.time() - 601 for h in recent)

    d = cli.json("topology", "diff", str(v_with), str(v_after))
    assert d["providers"]["vanished"] == ["topo-eph"]
    assert [c["cause"] for c in d["causes"]][:1] == ["provider deregistered"]
    table = cli.table("topology", "diff", str(v_with), str(v_after))
    assert "vanished" in table and "topo-eph" in table and "provider deregistered" in table

    seen = {p["id"]: p for p in cli.json("topology", "providers")}
    assert seen["topo-eph"]["present"] is False and seen["topo-eph"]["gone_cause"] == "provider deregistered"
    assert "topo-eph" in cli.table("topology", "providers")

    g = nx.node_link_graph(json.loads(cli.table("topology", "export", "--format", "json")), edges="edges")
    assert "zone:eu-west-1a" in g.nodes
    assert cli.json("topology", "export", "--version", str(v_with))["graph"]["version"] == v_with
    gml = cli.table("topology", "export", "--format", "graphml", "--version", str(v_with))
    assert "provider:topo-eph" in nx.parse_graphml(gml).nodes
    ET.fromstring(gml)
    out = tmp_path / "mesh.dot"
    assert cli.json("topology", "export", "--format", "dot", "--out", str(out)) == {
        "wrote": str(out),
        "format": "dot",
    }
    assert out.read_text().startswith("digraph") and "subgraph cluster_" in out.read_text()
    assert "422" in cli.fails("topology", "export", "--format", "png").stderr
    assert "404" in cli.fails("topology", "diff", "1", "999999").stderr


# -- audit -------------------------------------------------------------------------------------------------------
def test_audit_verbs(cli: Cli, fleet: list[str], tmp_path: Path) -> None:
    cid = _propose(cli, "cli-audited", 5)["contract"]["id"]
    entries = cli.json("audit", "list", "--contract", cid)
    assert entries and all(e["subject"] == cid for e in entries)
    assert [e["kind"] for e in entries] == ["admission"]  # one decision, one entry
    assert cid in cli.table("audit", "list", "--contract", cid)
    mine = cli.json("audit", "list", token=AGENT_TOKEN)
    assert mine and all(e["actor"] in ("planner-bot", "system") or e["subject"] for e in mine)
    assert cli.json("audit", "list", "--kind", "provider_registered", "--since", "1h")

    ok = cli.json("audit", "verify")
    assert ok["ok"] is True and ok["checked"] >= len(entries)
    assert "audit chain intact" in cli.table("audit", "verify")

    report = cli.json("audit", "report", "--since", "1h")
    assert isinstance(report, dict) and report
    printed = cli.table("audit", "report", "--since", "1h")
    assert "#" in printed  # the markdown report
    out = tmp_path / "report"
    assert "wrote" in cli.table("audit", "report", "--since", "1h", "--out", str(out))
    assert json.loads(Path(f"{out}.json").read_text()) and Path(f"{out}.md").read_text().startswith("#")


# -- policy --------------------------------------------------------------------------------------------------------
def test_policy_verbs(cli: Cli, tmp_path: Path) -> None:
    listed = cli.json("policy", "list")
    names = {p["name"] for p in listed["policies"]}
    assert {"pii-eu-only", "spend-escalation", "gdpr-compliance"} <= names
    assert "pii-eu-only" in cli.table("policy", "list")

    sample = tmp_path / "sample.yaml"
    sample.write_text(
        "consumer: x\nconsumer_zone: eu-west-1a\ncapability: graph-analysis\n"
        "sla: {p99_latency_ms: 50, rps: 10}\nlabels: {data_class: pii}\n"
    )
    providers = tmp_path / "providers.yaml"
    providers.write_text(
        "- {id: us-1, zone: us-east-1a, region: us-east, labels: {compliance: [gdpr]}}\n"
        "- {id: eu-1, zone: eu-west-1a, region: eu-west, labels: {compliance: [gdpr]}}\n"
    )
    tested = cli.json("policy", "test", str(sample), str(providers))
    allowed = {p["id"]: p["allowed"] for p in tested["providers"]}
    assert allowed == {"us-1": False, "eu-1": True}
    assert "pii-eu-only" in cli.table("policy", "test", str(sample), str(providers))

    digest = listed["digest"]
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\neffect: deny\npredicate: |\n  contract.sla.rps >>> 3\nmessage: no\n")
    refused = cli.fails("policy", "reload", str(bad))
    assert "422" in refused.stderr and "broken.yaml" in refused.stderr
    assert cli.json("policy", "list")["digest"] == digest  # the policies in force stayed

    only = tmp_path / "only.yaml"
    only.write_text(
        "name: deny-huge\neffect: deny\npredicate: |\n  contract.sla.rps > 100000.0\nmessage: too big\n"
    )
    replaced = cli.json("policy", "reload", str(only))
    assert [p["name"] for p in replaced["policies"]] == ["deny-huge"]
    assert "403" in cli.fails("policy", "reload", token=AGENT_TOKEN).stderr
    restored = cli.table("policy", "reload")  # back to the server's policy directory
    assert "pii-eu-only" in restored
    assert cli.json("policy", "list")["digest"] == digest


# -- transport details ---------------------------------------------------------------------------------------------
def test_event_stream_accepts_a_query_token(serve: ServeProcess) -> None:  # noqa: F811
    with httpx.stream(
        "GET", f"{serve.api}/v1/topology/stream", params={"token": OPERATOR_TOKEN}, timeout=10
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "event: topology"
        first = json.loads(next(lines).removeprefix("data: "))
    assert first["cause"] == "current" and len(first["zones"]) == 8
    denied = httpx.get(f"{serve.api}/v1/topology/stream", params={"token": "wrong"}, timeout=5)
    assert denied.status_code == 401


def test_installed_entry_point_and_bad_token(serve: ServeProcess) -> None:  # noqa: F811
    run = subprocess.run(
        [str(MESHCTL), "--api", serve.api, "--token", OPERATOR_TOKEN, "-o", "json", "topology", "history"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)[0]["version"] >= 1
    denied = subprocess.run(
        [str(MESHCTL), "--api", serve.api, "--token", "nope", "contracts", "list"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert denied.returncode == 1 and "401" in denied.stderr


# -- serve options ---------------------------------------------------------------------------------------------------
def test_serve_history_limit_bounds_retention(tmp_path: Path) -> None:
    server = start_serve("--history-limit", "3")
    try:
        c = Cli(server)
        for i in range(5):
            c.json(
                "providers", "register", str(provider_file(tmp_path, f"ret-{i}", "eu-west-1a", port=9400 + i))
            )
        hist = c.json("topology", "history")
        assert len(hist) == 3
        assert [h["detail"].get("provider") for h in hist] == ["ret-2", "ret-3", "ret-4"]
        assert "404" in c.fails("topology", "show", "--version", "1").stderr  # dropped
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes]] = []  # (service.name, span name, trace id)

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        for rs in request.resource_spans:
            service = next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name")
            for ss in rs.scope_spans:
                self.spans.extend((service, s.name, s.trace_id) for s in ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_serve_exports_negotiation_traces_over_otlp(tmp_path: Path) -> None:
    collector = _Collector()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        server = start_serve(env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
        try:
            c = Cli(server)
            c.json("providers", "register", str(provider_file(tmp_path, "otel-p", "eu-west-1a")))
            assert _propose(c, "otel-consumer", 10)["outcome"] == "admitted"
        finally:
            server.stop()  # SIGTERM: serve flushes the last batch on the way out
            server.log_path.unlink(missing_ok=True)
    finally:
        grpc_server.stop(0)
    names = {name for _, name, _ in collector.spans}
    assert {"negotiate", "policy", "solve", "store", "translate+push"} <= names, collector.spans
    assert {service for service, _, _ in collector.spans} == {"meshctl"}
    negotiate = next(t for _, name, t in collector.spans if name == "negotiate")
    assert {name for _, name, t in collector.spans if t == negotiate} >= {"policy", "solve", "store"}
