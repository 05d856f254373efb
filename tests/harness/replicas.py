"""Helpers for the replica and fault tests (and bench/store_bench.py): real `meshctl serve`
subprocesses on a real Redis, Envoys with a short xDS reconnect backoff, steady traffic through
Envoy, and direct reads of what Redis holds.

This module holds no tests; it is named test_* only so that it sits with the files it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from meshctl.bootstrap import envoy_bootstrap
from meshctl.local.envoy import EnvoyProcess, envoy_binary
from meshctl.local.net import free_port, http_request, wait_for, wait_for_sync
from meshctl.local.proc import end_process

REPO = Path(__file__).resolve().parents[2]
MESHCTL = str(Path(sys.executable).parent / "meshctl")

OPERATOR_TOKEN = "ops-token"
AGENT_TOKENS = {f"agent-{i}": f"agent-{i}-token" for i in range(3)}
TOKENS_ENV = ",".join(
    [f"{OPERATOR_TOKEN}=operator:ops", *(f"{tok}=agent:{name}" for name, tok in AGENT_TOKENS.items())]
)
OPS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
CAPABILITY = "graph-analysis"

TOPOLOGY = {
    "intra_zone_latency_ms": 0.5,
    "zones": [
        {"name": "eu-west-1a", "region": "eu-west"},
        {"name": "eu-west-1b", "region": "eu-west"},
        {"name": "eu-central-1a", "region": "eu-central"},
    ],
    "links": [
        {"a": "eu-west-1a", "b": "eu-west-1b", "latency_ms": 1.2},
        {"a": "eu-west-1a", "b": "eu-central-1a", "latency_ms": 12.0},
        {"a": "eu-west-1b", "b": "eu-central-1a", "latency_ms": 13.0},
    ],
}


def agent_headers(i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {AGENT_TOKENS[f'agent-{i % len(AGENT_TOKENS)}']}"}


def write_topology(directory: Path) -> Path:
    path = directory / "topology.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY))
    return path


class Replica:
    """One `meshctl serve --store redis://...` subprocess, started and stopped by PID.

    Ports are fixed at construction, so `kill()` then `start()` brings the replica back where its
    proxies expect it (same xDS address, same API address).
    """

    def __init__(
        self,
        store_url: str,
        workdir: Path,
        *,
        origin: str,
        api_port: int | None = None,
        xds_port: int | None = None,
    ) -> None:
        self.store_url = store_url
        self.workdir = workdir
        self.origin = origin
        self.api_port = api_port or free_port()
        self.xds_port = xds_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.origin}.log"

    def start(self, timeout: float = 30.0) -> Replica:
        topology = write_topology(self.workdir)
        self._log = open(self.log_path, "ab")
        self.starts += 1
        self._log.write(f"\n--- start #{self.starts} ---\n".encode())
        self._log.flush()
        args = [
            MESHCTL, "serve",
            "--store", self.store_url,
            "--api", f"127.0.0.1:{self.api_port}",
            "--xds", f"127.0.0.1:{self.xds_port}",
            "--origin", self.origin,
            "--topology", str(topology),
        ]  # fmt: skip
        env = {**os.environ, "MESHCTL_TOKENS": TOKENS_ENV}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            wait_for_sync(
                self._ready, timeout=timeout, what=f"replica {self.origin} /readyz", details=self.logs
            )
        except BaseException:
            self.kill()
            raise
        return self

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"replica {self.origin} exited with {code}:\n{self.logs()}")
        return http_request(self.api_port, "/readyz", timeout=2).status == 200

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: int, grace: float) -> None:
        proc, self.proc = self.proc, None
        end_process(proc, sig, grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: no shutdown path runs, as in a crash or an OOM kill."""
        self._signal(signal.SIGKILL, 5.0)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, 10.0)

    def logs(self, tail: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-tail:]
        except OSError:
            return ""
        return f"--- replica {self.origin} log ---\n" + "\n".join(lines)

    def unexpected_errors(self) -> list[str]:
        """Tracebacks and unretrieved task exceptions in the log: an outage is expected and must be
        handled (logged as a warning), never crash a request handler or a background task."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        marks = ("Traceback", "exception was never retrieved", "ERROR")
        return [line for line in text.splitlines() if any(m in line for m in marks)]

    def client(self, headers: dict[str, str] | None = None, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers or OPS, timeout=30.0, **kw)


@contextlib.contextmanager
def replicas(store_url: str, n: int) -> Iterator[list[Replica]]:
    """n replicas on one store, started concurrently (each spends ~2 s importing), all stopped."""
    workdir = Path(tempfile.mkdtemp(prefix="meshctl-replicas-"))
    group = [Replica(store_url, workdir, origin=f"replica-{i}") for i in range(n)]
    try:
        threads = [threading.Thread(target=r.start) for r in group]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in group:
            if not r.alive:
                raise AssertionError(f"replica {r.origin} did not start:\n{r.logs()}")
        yield group
    finally:
        for r in group:
            r.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the mesh the tests build over REST --------------------------------------------------------------
def provider_spec(
    pid: str, port: int, *, zone: str = "eu-west-1a", capacity: float = 1000.0, cost: float = 0.2
) -> dict[str, Any]:
    return {
        "id": pid,
        "capabilities": [CAPABILITY],
        "zone": zone,
        "endpoints": [{"address": "127.0.0.1", "port": port}],
        "labels": {"compliance": ["gdpr"]},
        "capacity_rps": capacity,
        "latency_p99_ms": 5.0,
        "cost_per_1k": cost,
    }


def contract_request(
    consumer: str, rps: float, *, zone: str = "eu-west-1a", p99: float = 60.0
) -> dict[str, Any]:
    return {
        "consumer": consumer,
        "consumer_zone": zone,
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": p99, "rps": rps},
        "max_cost_per_1k": 1.0,
        "duration_s": 3600,
    }


async def register(client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
    resp = await client.post("/v1/providers", json=spec, headers=OPS)
    assert resp.status_code == 201, resp.text


async def propose(client: httpx.AsyncClient, body: dict[str, Any], agent: int = 0) -> httpx.Response:
    return await client.post("/v1/contracts", json=body, headers=agent_headers(agent))


# -- what Redis holds (read directly, not through meshctl) ----------------------------------------------
def redis_reservations(url: str, prefix: str = "meshctl") -> dict[str, dict[str, float]]:
    """provider -> {contract -> rps}, straight from the `{p}:resv:<provider>` hashes."""
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        out: dict[str, dict[str, float]] = {}
        for key in r.scan_iter(match=f"{prefix}:resv:*"):
            held = r.hgetall(key)
            if held:
                out[key.removeprefix(f"{prefix}:resv:")] = {c: float(v) for c, v in held.items()}
        return out
    finally:
        r.close()


def redis_contract_ids(url: str, prefix: str = "meshctl") -> set[str]:
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return set(r.hkeys(f"{prefix}:contracts"))
    finally:
        r.close()


# -- Envoy -----------------------------------------------------------------------------------------------
def envoy_for(node_id: str, xds_port: int, *, service: str, zone: str = "eu-west-1a") -> EnvoyProcess:
    """A started Envoy for `service`. `meshctl bootstrap` caps its xDS reconnect backoff at 1 s
    (Envoy's default grows to 30 s), so a returning control plane is found within a second."""
    boot = envoy_bootstrap(
        node_id, service, zone, xds_port=xds_port, admin_port=free_port(), listener_port=free_port()
    )
    return EnvoyProcess(boot, name=node_id, binary=envoy_binary()).start()


def xds_versions(envoy: EnvoyProcess) -> dict[str, dict[str, str]]:
    """kind -> {resource name -> version_info} of what Envoy is running (endpoints included)."""
    dump = envoy.config_dump()
    out: dict[str, dict[str, str]] = {"listeners": {}, "routes": {}, "clusters": {}}
    for section in dump.get("configs", []):
        kind = section.get("@type", "")
        if kind.endswith("ListenersConfigDump"):
            for cfg in section.get("dynamic_listeners", []):
                if "active_state" in cfg:
                    out["listeners"][cfg["name"]] = cfg["active_state"].get("version_info", "")
        elif kind.endswith("RoutesConfigDump"):
            for cfg in section.get("dynamic_route_configs", []):
                out["routes"][cfg["route_config"]["name"]] = cfg.get("version_info", "")
        elif kind.endswith("ClustersConfigDump"):
            for cfg in section.get("dynamic_active_clusters", []):
                out["clusters"][cfg["cluster"]["name"]] = cfg.get("version_info", "")
    return out


def type_versions(envoy: EnvoyProcess) -> dict[str, str]:
    """kind -> version_info of the last response Envoy accepted for that type.

    Per-resource versions say in which response a resource last changed, which depends on the
    order changes arrived in; these say which state Envoy is in now."""
    names = {
        "ListenersConfigDump": "listeners",
        "RoutesConfigDump": "routes",
        "ClustersConfigDump": "clusters",
    }
    out: dict[str, str] = {}
    for section in envoy.config_dump().get("configs", []):
        kind = names.get(section.get("@type", "").rsplit(".", 1)[-1])
        if kind == "routes":
            # RDS keeps no type-level version: all route configs agree on it in SotW.
            versions = {c.get("version_info", "") for c in section.get("dynamic_route_configs", [])}
            out[kind] = ",".join(sorted(versions))
        elif kind is not None:
            out[kind] = section.get("version_info", "")
    return out


def route_weights(envoy: EnvoyProcess) -> dict[str, dict[str, int]]:
    """route config/virtual host/route -> {cluster: weight}: where Envoy sends each request kind."""
    out: dict[str, dict[str, int]] = {}
    for name, cfg in envoy.route_configs().items():
        for vh in cfg["route_config"].get("virtual_hosts", []):
            for i, route in enumerate(vh.get("routes", [])):
                action = route.get("route", {})
                key = f"{name}/{vh['name']}/{route.get('name', i)}"
                if "weighted_clusters" in action:
                    out[key] = {
                        c["name"]: int(c.get("weight", 0)) for c in action["weighted_clusters"]["clusters"]
                    }
                elif "cluster" in action:
                    out[key] = {action["cluster"]: 100}
    return out


def cluster_endpoints(envoy: EnvoyProcess) -> dict[str, list[str]]:
    """cluster -> sorted "addr:port@priority" Envoy has for it (EDS included)."""
    resp = envoy.admin("/clusters?format=json")
    out: dict[str, list[str]] = {}
    for c in resp.json().get("cluster_statuses", []):
        if not c.get("added_via_api"):
            continue
        hosts = []
        for h in c.get("host_statuses", []):
            sa = h["address"]["socket_address"]
            hosts.append(f"{sa['address']}:{sa['port_value']}@{h.get('priority', 0)}")
        out[c["name"]] = sorted(hosts)
    return out


def rejected_updates(envoy: EnvoyProcess) -> dict[str, int]:
    stats = envoy.stats()
    return {k: v for k, v in stats.items() if k.endswith("update_rejected") and v}


@dataclass
class Traffic:
    """Requests through an Envoy listener at a steady pace on a thread; counts every answer.

    Status 0 is a connection error (nothing listening, reset): a failure like any non-2xx.
    """

    envoy: EnvoyProcess
    host: str = CAPABILITY
    interval_s: float = 0.02
    statuses: Counter[int] = field(default_factory=Counter)
    upstreams: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[float, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name=f"traffic-{self.envoy.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        port = self.envoy.listener_port
        while not self._stop.is_set():
            resp = http_request(port, "/work", host=self.host, timeout=5)
            self.statuses[resp.status] += 1
            if 200 <= resp.status < 300:
                self.upstreams[resp.headers.get("x-upstream", "?")] += 1
            else:
                self.failures.append((time.time(), resp.status, resp.error or resp.text[:200]))
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    def summary(self) -> str:
        return f"{self.total} requests, statuses {dict(self.statuses)}, first failures {self.failures[:5]}"


async def wait_traffic_ok(envoy: EnvoyProcess, upstreams: set[str], timeout: float = 20.0) -> None:
    """Until requests through `envoy` answer 2xx from one of `upstreams` five times in a row."""
    streak = 0

    async def check() -> bool:
        nonlocal streak
        resp = await asyncio.to_thread(http_request, envoy.listener_port, "/work", host=CAPABILITY, timeout=5)
        streak = streak + 1 if resp.status == 200 and resp.headers.get("x-upstream") in upstreams else 0
        return streak >= 5

    await envoy.wait_for(check, timeout, f"traffic through Envoy to {sorted(upstreams)}")


# Envoy counters that move only when a listener or cluster is really (re)built: a re-sent
# resource with an unchanged version would bump *.update_success but none of these.
APPLIED = (
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
)


def applied(envoy: EnvoyProcess) -> dict[str, int]:
    stats = envoy.stats()
    return {k: stats.get(k, 0) for k in APPLIED}


async def wait_synced(replica: Replica, node_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Until `replica` reports `node_id` connected and ACKed on everything it was sent."""

    async def check() -> dict[str, Any] | None:
        async with replica.client() as c:
            resp = await c.get("/v1/proxies")
        for p in resp.json() if resp.status_code == 200 else []:
            if p["node"]["id"] == node_id and p["sync"] == "synced":
                return dict(p)
        return None

    return await wait_for(check, timeout=timeout, what=f"{node_id} synced on {replica.origin}", interval=0.1)
