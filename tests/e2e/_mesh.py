"""A whole mesh for end-to-end tests: control plane + REST API on loopback, real upstreams, real Envoys.

Everything runs in the test's event loop (uvicorn, the xDS server, the keeper, the traffic
client); Envoy and the upstream threads are the only other actors. Every process started here is
stopped by `Mesh.close()` (by PID for Envoy).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from harness import EnvoyProcess, UpstreamServer, envoy_binary, wait_for

from meshctl.api.app import create_app
from meshctl.api.auth import Identity, TokenTable
from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.local.upstream import UpstreamProcess
from meshctl.store.memory import MemoryStore
from meshctl.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "deploy" / "topology.yaml"
POLICIES = REPO / "policies"

AGENT, AGENT_B, OPERATOR, FLEET = "agent-a", "agent-b", "oncall", "provider-fleet"
TOKENS = {
    AGENT: "tok-agent-a",
    AGENT_B: "tok-agent-b",
    OPERATOR: "tok-operator",
    FLEET: "tok-fleet",
}
CAPABILITY = "graph-analysis"


def token_table() -> TokenTable:
    table = TokenTable({})
    table.add(TOKENS[AGENT], Identity(AGENT, "agent"))
    table.add(TOKENS[AGENT_B], Identity(AGENT_B, "agent"))
    table.add(TOKENS[OPERATOR], Identity(OPERATOR, "operator"))
    table.add(TOKENS[FLEET], Identity(FLEET, "agent"))
    return table


def provider_body(
    pid: str,
    zone: str,
    port: int,
    *,
    capacity: float,
    p99: float,
    cost: float,
    capability: str = CAPABILITY,
    ttl_s: float | None = None,
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pid,
        "capabilities": [capability],
        "zone": zone,
        "endpoints": [{"address": "127.0.0.1", "port": port}],
        "labels": labels or {"compliance": ["gdpr"]},
        "capacity_rps": capacity,
        "latency_p99_ms": p99,
        "cost_per_1k": cost,
    }
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    return body


@dataclass
class Sidecar:
    envoy: EnvoyProcess
    service: str
    zone: str

    @property
    def node_id(self) -> str:
        return self.envoy.node_id

    @property
    def port(self) -> int:
        return self.envoy.listener_port


class Mesh:
    def __init__(self, plane: ControlPlane, server: uvicorn.Server, task: asyncio.Task[None], base_url: str):
        self.plane = plane
        self.server = server
        self.server_task = task
        self.base_url = base_url
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self.upstreams: dict[str, UpstreamServer] = {}
        self.processes: dict[str, UpstreamProcess] = {}
        self.sidecars: list[Sidecar] = []
        self.heartbeating: set[str] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None

    # -- start / stop --------------------------------------------------------------------------------
    @classmethod
    async def start(cls, *, tick_s: float = 0.05, policies: bool = True) -> Mesh:
        plane = ControlPlane(
            MemoryStore(origin="e2e"),
            policies=PolicySet.load(POLICIES) if policies else None,
            policies_dir=str(POLICIES) if policies else None,
            topology=load_topology(TOPOLOGY),
            tick_s=tick_s,
        )
        app = create_app(plane, token_table(), manage=True, xds_port=0)
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
        # socket says TCP; with proto 0 every keep-alive answer waits ~40 ms on Nagle + delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port first
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve(sockets=[sock]))

        def up() -> bool:
            if task.done():
                raise AssertionError(f"API server exited during start-up: {task.exception()!r}")
            return server.started

        try:
            await wait_for(up, timeout=20, what="control plane API")
        except BaseException:
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 15)
            sock.close()
            raise
        return cls(plane, server, task, f"http://127.0.0.1:{port}")

    async def close(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        for sc in self.sidecars:
            await asyncio.to_thread(sc.envoy.stop)
        for up in self.upstreams.values():
            up.stop()
        for pid in list(self.processes):
            self.kill(pid)
        for client in self._clients.values():
            await client.aclose()
        self.server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self.server_task, 15)

    # -- REST ------------------------------------------------------------------------------------------------
    def client(self, who: str | None = AGENT) -> httpx.AsyncClient:
        """An API client authenticated as `who` (AGENT, AGENT_B, OPERATOR, FLEET) or anonymous (None)."""
        if who not in self._clients:
            headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
            self._clients[who] = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)
        return self._clients[who]

    @property
    def agent(self) -> httpx.AsyncClient:
        return self.client(AGENT)

    @property
    def agent_b(self) -> httpx.AsyncClient:
        return self.client(AGENT_B)

    @property
    def operator(self) -> httpx.AsyncClient:
        return self.client(OPERATOR)

    async def propose(self, body: dict[str, Any], *, who: str = AGENT, **params: Any) -> httpx.Response:
        return await self.client(who).post("/v1/contracts", json=body, params=params)

    async def contract(self, cid: str, who: str = OPERATOR) -> dict[str, Any]:
        r = await self.client(who).get(f"/v1/contracts/{cid}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    # -- providers ---------------------------------------------------------------------------------------------
    async def provider(
        self,
        pid: str,
        zone: str,
        *,
        capacity: float,
        p99: float,
        cost: float,
        ttl_s: float | None = None,
        **kw: Any,
    ) -> UpstreamServer:
        """Start a real upstream named `pid` (in this process) and register it over REST."""
        up = UpstreamServer(pid).start()
        self.upstreams[pid] = up
        await self._register(pid, zone, up.port, capacity=capacity, p99=p99, cost=cost, ttl_s=ttl_s, **kw)
        return up

    async def provider_process(
        self,
        pid: str,
        zone: str,
        *,
        capacity: float,
        p99: float,
        cost: float,
        ttl_s: float | None = None,
        **kw: Any,
    ) -> None:
        """Like `provider`, but the upstream runs in a child process that `kill(pid)` ends for real.

        An in-process upstream keeps answering on established keep-alive connections after
        `stop()`; a killed process takes its connections with it, as a crashed provider would.
        """
        port = await asyncio.to_thread(self._spawn, pid)
        await self._register(pid, zone, port, capacity=capacity, p99=p99, cost=cost, ttl_s=ttl_s, **kw)

    async def _register(
        self,
        pid: str,
        zone: str,
        port: int,
        *,
        capacity: float,
        p99: float,
        cost: float,
        capability: str = CAPABILITY,
        ttl_s: float | None = None,
        labels: dict[str, Any] | None = None,
        heartbeat: bool = True,
    ) -> None:
        body = provider_body(
            pid, zone, port, capacity=capacity, p99=p99, cost=cost, capability=capability,
            ttl_s=ttl_s, labels=labels,
        )  # fmt: skip
        r = await self.client(FLEET).post("/v1/providers", json=body)
        assert r.status_code == 201, r.text
        if ttl_s is not None and heartbeat:
            self.keep_alive([pid], every_s=ttl_s / 4)

    def _spawn(self, name: str) -> int:
        proc = UpstreamProcess(name).start()
        self.processes[name] = proc
        return proc.port

    def kill(self, name: str) -> None:
        """SIGKILL an own-process upstream by its PID: its connections die with it."""
        proc = self.processes.pop(name, None)
        if proc is not None:
            proc.kill()

    def keep_alive(self, pids: Iterable[str], every_s: float = 0.25) -> None:
        """Heartbeat `pids` until `stop_heartbeats`; the first call sets the interval for all."""
        self.heartbeating.update(pids)
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeats(every_s))

    def stop_heartbeats(self, pid: str) -> None:
        self.heartbeating.discard(pid)

    async def _heartbeats(self, every_s: float) -> None:
        http = self.client(FLEET)
        while True:
            for pid in sorted(self.heartbeating):
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(f"/v1/providers/{pid}/heartbeat")
            await asyncio.sleep(every_s)

    # -- sidecars ------------------------------------------------------------------------------------------------
    async def sidecar(self, node_id: str, service: str, zone: str) -> Sidecar:
        """A real Envoy for `service` in `zone`, connected over ADS and LIVE (its baseline ACKed)."""
        assert self.plane.xds_port is not None, "xDS server not started"
        envoy = EnvoyProcess.for_node(
            node_id,
            self.plane.xds_port,
            service=service,
            zone=zone,
            region=self.plane.state.graph.region_of(zone) or "",
            binary=envoy_binary(),
        )
        sc = Sidecar(envoy, service, zone)
        self.sidecars.append(sc)
        await asyncio.to_thread(envoy.start)
        await envoy.ready()
        return sc

    def held(self) -> dict[str, float]:
        """provider id -> rps held by all contracts together (the control plane's view)."""
        return {pid: sum(h.values()) for pid, h in self.plane.state.reservations.items() if h}

    async def stored_held(self) -> dict[str, float]:
        """The same, read from the store: what an atomic reservation is checked against."""
        res = await self.plane.store.reservations()
        return {pid: sum(h.values()) for pid, h in res.items() if h}
