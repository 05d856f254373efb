"""Solver benchmark: admission-time solve on a 10,000-provider / 100-zone mesh.

Every solve is a real admission: when it admits, the allocation's reservation is taken off the
residual capacity the next solve sees, so later solves meet a fuller mesh (and some counter-offers).
Printed beside the solver, measured in the same run on the same instances:
  floor (lookup+sort)  providers_for(capability) and a sort of the candidates by price: the least any
                       solver must do;
  floor (nx path)      one networkx shortest-path query between the consumer and a provider zone;
  split: greedy        the fast min-cost split alone, on the feasible candidates of the instance;
  split: nx reference  networkx.max_flow_min_cost on the same flow network (and the same answer).

Run: .venv/bin/python bench/solver_bench.py [--providers 10000 --zones 100 --solves 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from meshctl.model import Constraints, ContractRequest, Endpoint, Link, Provider, Sla, Zone
from meshctl.topology import CapabilityGraph, solve
from meshctl.topology.allocation import zone_cap, zones_required
from meshctl.topology.flow import FlowItem, greedy_split, order, reference_split, total_cost

TARGET_P99_MS = 5.0


def build_mesh(rng: random.Random, n_providers: int, n_zones: int, n_caps: int) -> CapabilityGraph:
    g = CapabilityGraph()
    n_regions = max(1, n_zones // 10)
    zones = [f"r{i % n_regions}-z{i}" for i in range(n_zones)]
    region = {z: z.split("-")[0] for z in zones}
    for z in zones:
        g.set_zone(Zone(name=z, region=region[z]))
    region_lat = {(a, b): rng.uniform(10, 95) for a in range(n_regions) for b in range(n_regions) if a < b}

    def latency(a: str, b: str) -> float:
        ra, rb = sorted((int(region[a][1:]), int(region[b][1:])))
        if ra == rb:
            return rng.uniform(1, 3)
        return region_lat[(ra, rb)] + rng.uniform(0, 5)

    order_ = zones[:]
    rng.shuffle(order_)
    for i in range(1, len(order_)):  # a random spanning tree keeps every zone reachable
        a, b = order_[i], order_[rng.randrange(i)]
        g.set_link(Link(a=a, b=b, latency_ms=round(latency(a, b), 2)))
    for _ in range(n_zones * 2):  # plus random extra links
        a, b = rng.sample(zones, 2)
        g.set_link(Link(a=a, b=b, latency_ms=round(latency(a, b), 2)))
    caps = [f"cap-{i}" for i in range(n_caps)]
    for i in range(n_providers):
        offered = rng.sample(caps, rng.choice([1, 1, 2]))
        g.set_provider(
            Provider(
                id=f"p{i}",
                capabilities=offered,
                zone=rng.choice(zones),
                endpoints=[Endpoint(address="10.0.0.1", port=8000 + i % 1000)],
                labels={"compliance": rng.sample(["gdpr", "pci", "hipaa"], rng.randint(0, 2))},
                capacity_rps=rng.choice([50, 100, 200, 500]),
                latency_p99_ms=round(rng.uniform(2, 40), 1),
                cost_per_1k=round(rng.uniform(0.1, 5.0), 2),
            )
        )
    return g


def make_request(rng: random.Random, caps: list[str]) -> ContractRequest:
    return ContractRequest(
        consumer=f"svc-{rng.randrange(200)}",
        capability=rng.choice(caps),
        sla=Sla(
            p99_latency_ms=rng.choice([30, 50, 80, 120, 200]),
            rps=rng.choice([20, 50, 100, 200, 400]),
            availability=rng.choice([None, None, None, 0.999, 0.9999]),
        ),
        constraints=Constraints(required_labels={"compliance": "gdpr"} if rng.random() < 0.2 else {}),
        max_cost_per_1k=rng.choice([None, None, 2.0, 3.5]),
    )


@dataclass
class Series:
    name: str
    ms: list[float] = field(default_factory=list)

    cpu_ms: list[float] = field(default_factory=list)

    def time(self, fn: Callable[[], Any]) -> Any:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        out = fn()
        self.ms.append((time.perf_counter_ns() - t0) / 1e6)
        self.cpu_ms.append((time.thread_time_ns() - c0) / 1e6)
        return out

    def row(self, cpu: bool = False) -> str:
        if not self.ms:
            return f"{self.name:<28} {'-':>6}"
        s = sorted(self.cpu_ms if cpu else self.ms)
        p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
        return (
            f"{self.name:<28} {len(s):>6} {p(0.50):>9.3f} {p(0.99):>9.3f} "
            f"{statistics.fmean(s):>9.3f} {s[-1]:>9.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--providers", type=int, default=10_000)
    ap.add_argument("--zones", type=int, default=100)
    ap.add_argument("--capabilities", type=int, default=50)
    ap.add_argument("--solves", type=int, default=1_000)
    ap.add_argument("--reference", type=int, default=200, help="instances also solved by networkx")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--no-freeze", action="store_true", help="skip gc.freeze() after loading (shows full-GC stalls)"
    )
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    g = build_mesh(rng, args.providers, args.zones, args.capabilities)
    build_s = time.perf_counter() - t0
    zones = [z.name for z in g.zones()]
    t0 = time.perf_counter()
    for z in zones:  # the all-pairs cache, valid until a zone or link changes
        g.zone_latency(z, z)
    warm_ms = (time.perf_counter() - t0) * 1e3
    if not args.no_freeze:
        # A long-lived graph of ~10^5 objects makes every full collection walk it (~50-90 ms stalls
        # inside random solves); freezing what was loaded is what a server does after start-up.
        gc.collect()
        gc.freeze()
    net = nx.Graph()
    for ln in g.links():
        net.add_edge(ln.a, ln.b, latency_ms=ln.latency_ms)

    solver, admitted_s, other_s = (
        Series("solve (all admissions)"),
        Series("  solve: admitted"),
        Series("  solve: counter/reject"),
    )
    floor_sort, floor_path = Series("floor: lookup + sort"), Series("floor: 1 nx shortest path")
    fast_split, ref_split = Series("split: greedy (fast)"), Series("split: nx max_flow_min_cost")
    residual: dict[str, float] = {}
    outcomes = {"admitted": 0, "counter_offer": 0, "rejected": 0}
    mismatches = 0
    caps = g.capabilities()
    for i in range(args.solves):
        req = make_request(rng, caps)
        cz = rng.choice(zones)
        res = solver.time(lambda req=req, cz=cz: solve(req, g, residual, consumer_zone=cz, now=0.0))
        (admitted_s if res.allocation else other_s).ms.append(solver.ms[-1])
        if res.allocation is not None:
            outcomes["admitted"] += 1
            for pid, rps in res.allocation.reservation.items():
                cap = g.provider(pid).capacity_rps  # type: ignore[union-attr]
                residual[pid] = residual.get(pid, cap) - rps
        else:
            outcomes["counter_offer" if res.counter_offer else "rejected"] += 1
        floor_sort.time(lambda req=req: sorted(g.providers_for(req.capability), key=lambda p: p.cost_per_1k))
        target = rng.choice(zones)
        floor_path.time(lambda cz=cz, t=target: nx.shortest_path_length(net, cz, t, weight="latency_ms"))
        if i < args.reference:
            items = [
                FlowItem(c.provider_id, c.zone, c.residual_rps, c.cost_per_1k, c.expected_p99_ms or 0.0)
                for c in res.candidates
                if c.feasible
            ]
            zc = zone_cap(req.sla.rps, zones_required(req.sla.availability))
            fast = fast_split.time(
                lambda items=items, req=req, zc=zc: greedy_split(order(items), req.sla.rps, zc)
            )
            ref = ref_split.time(lambda items=items, req=req, zc=zc: reference_split(items, req.sla.rps, zc))
            if abs(total_cost(fast, items) - total_cost(ref, items)) > 1e-3 * max(
                1.0, total_cost(ref, items)
            ):
                mismatches += 1

    per_cap = args.providers * 1.33 / args.capabilities
    print(
        f"mesh: {args.providers} providers, {len(zones)} zones, {len(g.links())} links, "
        f"{len(caps)} capabilities (~{per_cap:.0f} providers each); built in {build_s:.1f} s; "
        f"all-pairs latency cache warmed in {warm_ms:.1f} ms; gc.freeze after load: {not args.no_freeze}"
    )
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end of the run")
    print(
        f"{args.solves} admissions: {outcomes['admitted']} admitted, {outcomes['counter_offer']} counter-offers, "
        f"{outcomes['rejected']} rejected; reference checked on {min(args.reference, args.solves)} "
        f"instances, cost mismatches: {mismatches}"
    )
    print()
    print(f"{'series (ms)':<28} {'n':>6} {'p50':>9} {'p99':>9} {'mean':>9} {'max':>9}")
    print("-" * 75)
    for s in (solver, admitted_s, other_s, floor_sort, floor_path, fast_split, ref_split):
        print(s.row())
    # CPU time of the same calls: what the solver costs with other processes' preemption removed.
    print(Series("solve: thread CPU time", ms=solver.cpu_ms, cpu_ms=solver.cpu_ms).row(cpu=True))
    print(Series("floor: lookup+sort CPU", ms=floor_sort.cpu_ms, cpu_ms=floor_sort.cpu_ms).row(cpu=True))
    print()
    wall = sorted(solver.ms)[min(len(solver.ms) - 1, int(0.99 * len(solver.ms)))]
    cpu = sorted(solver.cpu_ms)[min(len(solver.cpu_ms) - 1, int(0.99 * len(solver.cpu_ms)))]
    verdict = "PASS" if wall <= TARGET_P99_MS else "FAIL"
    print(
        f"target: solver p99 <= {TARGET_P99_MS:.1f} ms -> wall {wall:.3f} ms {verdict} (CPU time {cpu:.3f} ms)"
    )
    if verdict == "FAIL" and cpu <= TARGET_P99_MS:
        print(
            "  the wall-clock tail is preemption by other processes (see the floors' p99); rerun on a quiet host"
        )
    # Correctness is the exit status; the timing verdict is printed, host noise must not fail a build.
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
