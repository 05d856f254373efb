"""Store benchmark: admissions per second through the REST API, memory store beside Redis.

Every configuration runs in this one process's run, on this machine, against real `meshctl serve`
child processes (the same command operators run) with their own redis-server (AOF on, no RDB):

  memory              1 replica, embedded store (not durable, cannot be shared)
  redis always   x1   1 replica, appendfsync always (nothing acknowledged is lost on a crash)
  redis everysec x1   1 replica, appendfsync everysec (up to ~1 s of acknowledged writes at risk)
  redis always   x3   3 replicas on one Redis, clients spread over them

Each configuration starts from an empty mesh with 8 providers of ample capacity, takes --warmup
admissions, then --admissions more from --clients concurrent httpx clients (each proposal is a
real negotiation: policies, solve, atomic reservation, audit, history, push). Admission cost grows
with the number of contracts held (history snapshots cover the whole mesh), so every
configuration admits the same number. Latency is measured at the client.

Run: .venv/bin/python bench/store_bench.py [--admissions 1000 --clients 32 --warmup 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from harness import RedisServer  # noqa: E402
from harness.replicas import (  # noqa: E402
    OPS,
    Replica,
    agent_headers,
    contract_request,
    provider_spec,
    replicas,
)


@dataclass
class Result:
    name: str
    replicas: int
    admitted: int
    other: Counter[int]
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.admitted / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


@contextlib.contextmanager
def memory_replica() -> Iterator[list[Replica]]:
    workdir = Path(tempfile.mkdtemp(prefix="meshctl-bench-"))
    r = Replica("memory", workdir, origin="memory").start()
    try:
        yield [r]
    finally:
        r.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def admit(
    group: list[Replica], n: int, clients: int, offset: int
) -> tuple[int, Counter[int], float, list[float]]:
    """n proposals from `clients` concurrent workers (client i talks to replica i mod len(group))."""
    next_i = offset
    end = offset + n
    admitted = 0
    other: Counter[int] = Counter()
    latencies: list[float] = []

    async def worker(w: int) -> None:
        nonlocal next_i, admitted
        r = group[w % len(group)]
        async with httpx.AsyncClient(base_url=r.url, headers=agent_headers(w), timeout=60.0) as c:
            while next_i < end:
                i = next_i
                next_i += 1
                t = time.perf_counter()
                resp = await c.post("/v1/contracts", json=contract_request(f"svc-{i % 50}", 1.0))
                latencies.append((time.perf_counter() - t) * 1000)
                if resp.status_code == 201:
                    admitted += 1
                else:
                    other[resp.status_code] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    return admitted, other, time.perf_counter() - started, latencies


async def run_config(name: str, group: list[Replica], args: argparse.Namespace) -> Result:
    async with httpx.AsyncClient(base_url=group[0].url, headers=OPS, timeout=30.0) as c:
        for i in range(8):
            resp = await c.post("/v1/providers", json=provider_spec(f"p-{i}", 20000 + i, capacity=1e9))
            resp.raise_for_status()
    await asyncio.sleep(0.3)  # other replicas learn the providers from the change feed
    await admit(group, args.warmup, min(args.clients, args.warmup), 0)
    admitted, other, seconds, lat = await admit(group, args.admissions, args.clients, args.warmup)
    return Result(name, len(group), admitted, other, seconds, lat)


async def run(args: argparse.Namespace) -> list[Result]:
    results = []
    with memory_replica() as group:
        results.append(await run_config("memory", group, args))
    for fsync, n in (("always", 1), ("everysec", 1), ("always", 3)):
        with RedisServer(fsync=fsync) as redis_server, replicas(redis_server.url, n) as group:
            results.append(await run_config(f"redis {fsync}", group, args))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admissions", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args(argv)
    print(
        f"host: {os.cpu_count()} CPUs; {args.admissions} admissions per row after {args.warmup} warm-up, "
        f"{args.clients} concurrent clients, REST API on loopback"
    )
    results = asyncio.run(run(args))
    base = results[0].rate
    header = f"{'store':<16}{'replicas':>9}{'admitted':>10}{'adm/s':>9}{'vs memory':>11}{'p50 ms':>9}{'p99 ms':>9}  other"
    print(header)
    print("-" * len(header))
    for r in results:
        other = ", ".join(f"{s}x{n}" for s, n in sorted(r.other.items())) or "-"
        print(
            f"{r.name:<16}{r.replicas:>9}{r.admitted:>10}{r.rate:>9.1f}{r.rate / base:>10.0%}"
            f"{statistics.median(r.latencies_ms):>9.1f}{r.pct(0.99):>9.1f}  {other}"
        )
    failed = [r.name for r in results if r.admitted != args.admissions]
    if failed:
        print(f"not every proposal was admitted in: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
