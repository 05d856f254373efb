"""The demo story, step by step. Every process it starts it stops, also on Ctrl-C or failure.

1. A control plane (memory store, policies from policies/, topology from deploy/) and a real
   Envoy sidecar for the fraud-detection service in eu-west-1a.
2. Four graph-analysis providers register with leases: two in eu-west, one in eu-central, one in
   us-east (the cheapest and fastest, but not in the EU).
3. 2:17 AM: the fraud-detection agent detects an attack pattern and negotiates 300 rps at p99
   ≤ 40 ms for PII data — the EU-only policy removes us-east; the solver spreads over zones.
4. Real requests through Envoy follow the allocated weights.
5. The Frankfurt provider vanishes (process gone, heartbeats stop); its lease lapses, the
   contract is re-solved and traffic fails over.
6. The attack is contained; the agent revokes the contract and Envoy withdraws the route.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from meshctl.api.app import create_app
from meshctl.api.auth import Identity, TokenTable
from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.local.envoy import EnvoyProcess, envoy_binary
from meshctl.local.net import free_port, http_request, wait_for
from meshctl.local.upstream import UpstreamProcess
from meshctl.store.memory import MemoryStore
from meshctl.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
console = Console()

AGENT = "fraud-detection-agent"
TOKENS = {"agent": "demo-agent-token", "provider": "demo-provider-token", "operator": "demo-operator-token"}


@dataclass
class ProviderDef:
    id: str
    zone: str
    capacity: float
    p99: float
    cost: float
    compliance: list[str]
    note: str


PROVIDERS = [
    ProviderDef("ga-dublin-a", "eu-west-1a", 200, 18, 0.40, ["gdpr", "pci"], "Dublin, same zone"),
    ProviderDef("ga-dublin-b", "eu-west-1b", 150, 22, 0.35, ["gdpr"], "Dublin, next zone"),
    ProviderDef("ga-frankfurt", "eu-central-1a", 250, 12, 0.30, ["gdpr"], "Frankfurt"),
    ProviderDef("ga-virginia", "us-east-1a", 1000, 8, 0.10, [], "Virginia: cheapest, fastest, not EU"),
]


class Demo:
    def __init__(self, fast: bool) -> None:
        self.pause_s = 0.3 if fast else 1.5
        self.upstreams: dict[str, UpstreamProcess] = {}
        self.envoy: EnvoyProcess | None = None
        self.server: uvicorn.Server | None = None
        self.heartbeating: set[str] = set()
        self.step_no = 0

    # -- narration --------------------------------------------------------------------------------------
    def step(self, title: str, text: str) -> None:
        self.step_no += 1
        console.print()
        console.print(
            Panel(text, title=f"[bold]{self.step_no}. {title}[/]", title_align="left", border_style="cyan")
        )

    async def pause(self) -> None:
        await asyncio.sleep(self.pause_s)

    # -- processes ----------------------------------------------------------------------------------------
    async def start_control_plane(self) -> tuple[ControlPlane, str]:
        tf = load_topology(REPO / "deploy" / "topology.yaml")
        policies = PolicySet.load(REPO / "policies")
        self.plane = ControlPlane(
            MemoryStore(origin="demo"),
            policies=policies,
            policies_dir=str(REPO / "policies"),
            topology=tf,
            tick_s=0.1,
        )
        tokens = TokenTable({})
        tokens.add(TOKENS["agent"], Identity(AGENT, "agent"))
        tokens.add(TOKENS["provider"], Identity("graph-analysis-fleet", "agent"))
        tokens.add(TOKENS["operator"], Identity("oncall", "operator"))
        xds_port, api_port = free_port(), free_port()
        app = create_app(self.plane, tokens, manage=True, xds_port=xds_port)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning")
        )
        self.server_task = asyncio.create_task(self.server.serve())
        base = f"http://127.0.0.1:{api_port}"
        await wait_for(
            lambda: self.server is not None and self.server.started, timeout=20, what="control plane API"
        )
        return self.plane, base

    async def stop_all(self) -> None:
        if self.envoy is not None:
            await asyncio.to_thread(self.envoy.stop)
        for up in self.upstreams.values():
            up.stop()
        if self.server is not None:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server_task, 10)

    async def heartbeats(self, http: httpx.AsyncClient) -> None:
        while True:
            for pid in list(self.heartbeating):
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(f"/v1/providers/{pid}/heartbeat", headers=_auth("provider"))
            await asyncio.sleep(0.5)

    # -- traffic ------------------------------------------------------------------------------------------------
    async def traffic(self, n: int, rps: float = 150.0) -> tuple[Counter[str], Counter[int]]:
        """n real requests through the sidecar, paced under the contracted rate."""
        assert self.envoy is not None
        port = self.envoy.listener_port
        by_upstream: Counter[str] = Counter()
        statuses: Counter[int] = Counter()

        def one() -> None:
            r = http_request(port, "/analyze", host="graph-analysis", timeout=5)
            statuses[r.status] += 1
            if r.status == 200:
                by_upstream[r.headers.get("x-upstream", "?")] += 1

        start = time.monotonic()
        pending: list[asyncio.Future[None]] = []
        for i in range(n):
            delay = start + i / rps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(asyncio.to_thread(one)))
        await asyncio.gather(*pending)
        return by_upstream, statuses


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def _split_table(
    title: str, by_upstream: Counter[str], statuses: Counter[int], weights: dict[str, int]
) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("provider", "allocated weight", "requests", "observed share"):
        t.add_column(c)
    total = sum(by_upstream.values()) or 1
    for name in sorted(set(weights) | set(by_upstream)):
        t.add_row(
            name,
            f"{weights.get(name, 0)}%",
            str(by_upstream.get(name, 0)),
            f"{100 * by_upstream.get(name, 0) / total:.1f}%",
        )
    t.caption = "HTTP statuses: " + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items()))
    return t


def _weights(contract: dict[str, Any]) -> dict[str, int]:
    a = contract.get("allocation") or {}
    return {s["provider_id"]: s["weight"] for s in a.get("shares", [])}


@contextlib.contextmanager
def _noisy_loggers_quiet() -> Iterator[None]:
    import logging

    old = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger().setLevel(old)


async def _story(demo: Demo, keep: bool) -> int:
    envoy_bin = envoy_binary()
    demo.step(
        "A control plane comes up",
        "meshctl on the embedded store: 8 zones in 3 regions (deploy/topology.yaml), the default policies "
        "(policies/), an xDS server for sidecars and the REST API for agents.",
    )
    plane, base = await demo.start_control_plane()
    http = httpx.AsyncClient(base_url=base, timeout=15)
    hb = asyncio.create_task(demo.heartbeats(http))
    try:
        pol = (await http.get("/v1/policies", headers=_auth("operator"))).json()
        console.print(
            f"  API {base}/docs · xDS 127.0.0.1:{plane.xds_port} · policies: "
            + ", ".join(p["name"] for p in pol["policies"])
        )

        demo.step(
            "Providers advertise a capability",
            "Four graph-analysis providers register with 3-second leases and keep them alive with heartbeats.",
        )
        t = Table(title="graph-analysis providers", title_justify="left")
        for c in ("provider", "zone", "capacity rps", "p99 ms", "cost/1k", "compliance", "note"):
            t.add_column(c)
        for p in PROVIDERS:
            up = await asyncio.to_thread(UpstreamProcess(p.id).start)
            demo.upstreams[p.id] = up
            body = {
                "id": p.id,
                "capabilities": ["graph-analysis"],
                "zone": p.zone,
                "endpoints": [{"address": "127.0.0.1", "port": up.port}],
                "labels": {"compliance": p.compliance},
                "capacity_rps": p.capacity,
                "latency_p99_ms": p.p99,
                "cost_per_1k": p.cost,
                "ttl_s": 3,
            }
            r = await http.post("/v1/providers", json=body, headers=_auth("provider"))
            r.raise_for_status()
            demo.heartbeating.add(p.id)
            t.add_row(
                p.id,
                p.zone,
                f"{p.capacity:g}",
                f"{p.p99:g}",
                f"{p.cost:.2f}",
                ",".join(p.compliance) or "-",
                p.note,
            )
        console.print(t)

        demo.step(
            "The fraud-detection sidecar connects",
            "A real Envoy (node fraud-detection-1, eu-west-1a) bootstrapped by `meshctl bootstrap` connects over ADS and gets its baseline: an outbound listener with no routes yet.",
        )
        demo.envoy = EnvoyProcess.for_node(
            "fraud-detection-1",
            plane.xds_port or 0,
            service="fraud-detection",
            zone="eu-west-1a",
            region="eu-west",
            binary=envoy_bin,
        )
        await asyncio.to_thread(demo.envoy.start)
        await demo.envoy.ready()
        r0 = await asyncio.to_thread(http_request, demo.envoy.listener_port, "/", host="graph-analysis")
        console.print(
            f"  sidecar listening on 127.0.0.1:{demo.envoy.listener_port}; a request for graph-analysis now gets HTTP {r0.status} (no contract, no route)"
        )
        await demo.pause()

        demo.step(
            "02:17 — an attack pattern",
            "The fraud-detection agent sees a burst of linked card-testing transactions and needs graph analysis now: "
            "300 rps, p99 ≤ 40 ms, availability 99.9 %, PII data (EU only), bid 0.50 per 1k requests, for 10 minutes.",
        )
        proposal = {
            "consumer": "fraud-detection",
            "capability": "graph-analysis",
            "sla": {"p99_latency_ms": 40, "rps": 300, "availability": 0.999},
            "max_cost_per_1k": 0.5,
            "duration_s": 600,
            "labels": {"data_class": "pii", "case": "attack-0217"},
        }
        started = time.perf_counter()
        r = await http.post("/v1/contracts", params={"wait": "acked"}, json=proposal, headers=_auth("agent"))
        took_ms = (time.perf_counter() - started) * 1000
        decision = r.json()
        contract = decision["contract"]
        cid = contract["id"]
        console.print(
            f"  answer: [bold green]{decision['outcome']}[/] in {took_ms:.1f} ms (negotiated, reserved, pushed and ACKed by Envoy) — contract {cid}"
        )
        explain = (await http.get(f"/v1/contracts/{cid}/explain", headers=_auth("agent"))).json()
        t = Table(title="why the traffic goes where it goes", title_justify="left")
        for c in ("provider", "zone", "feasible", "dropped because", "expected p99 ms"):
            t.add_column(c)
        for c in explain["candidates"]:
            t.add_row(
                c["provider"],
                c["zone"],
                "yes" if c["feasible"] else "[red]no[/]",
                c["dropped_because"] or "",
                f"{c['expected_p99_ms']:.1f}" if c["expected_p99_ms"] is not None else "-",
            )
        console.print(t)
        t = Table(title="allocation", title_justify="left")
        for c in ("provider", "zone", "rps", "weight", "expected p99 ms", "priority"):
            t.add_column(c)
        a = contract["allocation"]
        for s in [*a["shares"], *a["failover"]]:
            t.add_row(
                s["provider_id"],
                s["zone"],
                f"{s['rps']:g}",
                f"{s['weight']}%",
                f"{s['expected_p99_ms']:.1f}",
                "failover" if s["priority"] else "primary",
            )
        console.print(t)
        console.print(f"  acked by: {', '.join(a['acked_by']) or '-'}")

        demo.step(
            "Real traffic follows the contract",
            "600 requests through the sidecar (Host: graph-analysis), paced at 150 rps.",
        )
        by_up, statuses = await demo.traffic(600)
        console.print(_split_table("observed split", by_up, statuses, _weights(contract)))

        vanished = max(a["shares"], key=lambda s: s["weight"])["provider_id"]
        demo.step(
            f"{vanished} vanishes",
            f"The {vanished} process dies and its heartbeats stop. Its lease lapses within 3 s; meshctl re-solves the contract "
            "and pushes the new routes. Meanwhile Envoy's retries and outlier detection (and the failover endpoints at "
            "priority 1) absorb the gap.",
        )
        demo.heartbeating.discard(vanished)
        demo.upstreams[vanished].kill()
        traffic_task = asyncio.create_task(demo.traffic(900))
        await wait_for(lambda: plane.state.graph.provider(vanished) is None, timeout=10, what="lease lapse")
        by_up, statuses = await traffic_task
        contract = (await http.get(f"/v1/contracts/{cid}", headers=_auth("agent"))).json()
        console.print(
            f"  contract state: [bold]{contract['state']}[/]; last event: {contract['events'][-1]['kind']} — {contract['events'][-1]['detail']}"
        )
        console.print(
            _split_table("split while failing over (900 requests)", by_up, statuses, _weights(contract))
        )
        by_up, statuses = await demo.traffic(450)
        console.print(_split_table("split after the re-solve", by_up, statuses, _weights(contract)))

        demo.step(
            "02:41 — contained; the contract ends",
            "The agent revokes the contract: capacity returns to the pool and the route is withdrawn from Envoy.",
        )
        r = await http.post(f"/v1/contracts/{cid}/revoke", headers=_auth("agent"))
        console.print(f"  contract {cid}: {r.json()['state']}")
        await demo.envoy.wait_for(
            lambda: http_request(demo.envoy.listener_port, "/", host="graph-analysis").status == 404,  # type: ignore[union-attr]
            timeout=10,
            what="route withdrawn",
        )
        console.print("  a request for graph-analysis now gets HTTP 404 from Envoy: the route is gone")
        held = {pid: sum(h.values()) for pid, h in plane.state.reservations.items() if h}
        console.print(f"  capacity still held: {held or 'none'}")

        demo.step(
            "The record",
            "Every decision is in the hash-chained audit log; the topology history kept every change, including the provider that is gone.",
        )
        v = (await http.get("/v1/audit/verify", headers=_auth("operator"))).json()
        entries = (await http.get("/v1/audit", headers=_auth("operator"))).json()
        hist = (await http.get("/v1/topology/history", headers=_auth("operator"))).json()
        kinds = Counter(e["kind"] for e in entries)
        console.print(
            f"  audit: {len(entries)} entries ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); chain intact: {v['ok']}"
        )
        console.print(
            f"  topology history: {len(hist)} versions, from '{hist[0]['cause']}' to '{hist[-1]['cause']}'"
        )
        if keep:
            console.print(
                Panel(
                    f"export MESHCTL_API={base} MESHCTL_TOKEN={TOKENS['operator']}\n"
                    "meshctl proxies status · meshctl contracts list · meshctl explain <id> · meshctl audit verify\n"
                    f"web view: {base}/ui/   (Ctrl-C to stop)",
                    title="still running",
                    border_style="green",
                )
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        console.print("\n[bold green]demo complete[/] — stopping Envoy, upstreams and the control plane")
        return 0
    finally:
        hb.cancel()
        await http.aclose()


async def _main(keep: bool, fast: bool) -> int:
    demo = Demo(fast)
    try:
        with _noisy_loggers_quiet():
            return await _story(demo, keep)
    finally:
        await demo.stop_all()


def run_demo(*, keep: bool = False, fast: bool = True) -> int:
    try:
        return asyncio.run(_main(keep, fast))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the story failed: say where, every process is already stopped
        console.print(f"[red]demo failed:[/] {type(e).__name__}: {e}")
        return 1
