#!/usr/bin/env python3
"""xDS push benchmarks: meshctl's ADS server beside bare-gRPC floors measured in the same run.

(a) route change -> real Envoy ACK latency (p50/p99 over N changes), SotW and delta, beside a bare
    grpc.aio server pushing the same serialized DiscoveryResponse bytes to one stream and waiting
    for the ACK;
(b) one change -> 1,000 ADS streams until every one ACKed, beside a bare grpc.aio fan-out of the
    same bytes to 1,000 streams;
(c) an Envoy holding 10,000 clusters, one cluster changed: delta push->ACK vs a full SotW resend
    (a separate Envoy in SotW mode), as a ratio.

The stream clients of (a-floor) and (b) run in a separate process and are the same code for the
meshctl server and the bare floor, so the difference is the server. Usage:

    .venv/bin/python bench/xds_bench.py [--changes 200] [--streams 1000] [--clusters 10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402
from google.protobuf.message import Message  # noqa: E402
from harness import EnvoyProcess, envoy_binary, free_port  # noqa: E402
from harness.ads_client import AdsClient  # noqa: E402
from harness.resources import many_static_clusters, static_cluster  # noqa: E402

from meshctl.translate import builders as b  # noqa: E402
from meshctl.xds import ProxyStatusRegistry, Snapshot, SnapshotCache, XdsServer  # noqa: E402
from meshctl.xds import resources as r  # noqa: E402
from meshctl.xds.server import SERVER_OPTIONS  # noqa: E402

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
STREAMS_PER_CHANNEL = 100
SINK_PORT = 9  # discard: the clusters are never dialled, only configured


# --- shared pieces --------------------------------------------------------------------------------


class AckWatch:
    """xDS callbacks: resolves once every expected (node, type, version) ACK arrived."""

    def __init__(self) -> None:
        self._pending: set[tuple[str, str, str]] = set()
        self._done = asyncio.Event()
        self.nacks: list[str] = []

    def expect(self, keys: Iterable[tuple[str, str, str]]) -> None:
        self._pending = set(keys)
        self._done = asyncio.Event()
        if not self._pending:
            self._done.set()

    def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        key = (node_id, type_url, version)
        if key in self._pending:
            self._pending.discard(key)
            if not self._pending:
                self._done.set()

    def on_nack(self, node_id: str, type_url: str, version: str, error: str) -> None:
        self.nacks.append(f"{node_id} {type_url} {version}: {error}")

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(
                f"{len(self._pending)} ACKs missing after {timeout}s, e.g. {sorted(self._pending)[:3]};"
                f" NACKs: {self.nacks[:3]}"
            ) from None


class BareAds:
    """The floor: a grpc.aio server on the ADS method that pushes given bytes and reads one reply
    per push, with no xDS logic at all."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[bytes]] = []
        self._acks = 0
        self._target = 0
        self._done = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    async def _stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.read()  # the subscription
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.append(queue)
        while True:
            await context.write(await queue.get())
            if await context.read() is grpc.aio.EOF:
                return
            self._acks += 1
            if self._acks >= self._target:
                self._done.set()

    async def start(self) -> int:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        handler = grpc.method_handlers_generic_handler(
            ADS_SERVICE, {"StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(self._stream)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return port

    async def push(self, data: bytes, timeout: float = 60.0) -> float:
        """Seconds from handing `data` to every stream until every stream replied."""
        self._acks, self._target = 0, len(self.queues)
        self._done = asyncio.Event()
        t0 = time.perf_counter()
        for queue in self.queues:
            queue.put_nowait(data)
        await asyncio.wait_for(self._done.wait(), timeout)
        return time.perf_counter() - t0

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)


class ClientProcess:
    """`streams` ACKing ADS clients (harness.ads_client) in a separate process, stopped by PID."""

    def __init__(self, port: int, streams: int, prefix: str, type_url: str) -> None:
        self.args = [sys.executable, __file__, "client", str(port), str(streams), prefix, type_url]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ClientProcess:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


async def client_main(port: int, streams: int, prefix: str, type_url: str) -> None:
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        for _ in range((streams + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    for i in range(streams):
        AdsClient(channels[i // STREAMS_PER_CHANNEL], f"{prefix}-{i}", (type_url,)).start()
    await asyncio.Event().wait()


async def wait_streams(bare: BareAds, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(bare.queues) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(bare.queues)}/{count} streams connected to the bare server")
        await asyncio.sleep(0.02)


def sotw_bytes(snapshot: Snapshot, type_url: str, nonce: str = "1") -> bytes:
    """The DiscoveryResponse a SotW stream carries for `type_url` of `snapshot`."""
    return discovery_pb2.DiscoveryResponse(
        version_info=snapshot.version(type_url),
        type_url=type_url,
        nonce=nonce,
        resources=[e.packed for e in snapshot.entries(type_url).values()],
    ).SerializeToString()


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def start_meshctl() -> tuple[XdsServer, SnapshotCache, AckWatch, int]:
    cache, watch = SnapshotCache(), AckWatch()
    server = XdsServer(cache, ProxyStatusRegistry(), watch)
    port = await server.start("127.0.0.1", 0)
    return server, cache, watch, port


# --- (a) route change -> Envoy ACK ------------------------------------------------------------------


def route_snapshots(listener_port: int, count: int) -> list[Snapshot]:
    """`count` snapshots that differ only in one route's request header."""
    fixed: list[Message] = [
        b.outbound_listener("outbound", listener_port, "routes"),
        b.eds_cluster("svc-a", outlier=False),
        b.load_assignment("svc-a", [b.LbEndpointSpec("127.0.0.1", SINK_PORT)]),
    ]
    return [
        Snapshot.build(
            [
                *fixed,
                b.route_configuration(
                    "routes",
                    [
                        b.virtual_host(
                            "all",
                            ["*"],
                            [b.weighted_route([("svc-a", 100)], request_headers={"x-change": str(i)})],
                        )
                    ],
                ),
            ]
        )
        for i in range(count)
    ]


async def bench_route_change(ads: str, snaps: list[Snapshot], listener_port: int, warmup: int) -> list[float]:
    server, cache, watch, port = await start_meshctl()
    node = f"bench-{ads}"
    envoy = EnvoyProcess.for_node(node, port, ads=ads, listener_port=listener_port)  # type: ignore[arg-type]
    try:
        watch.expect([(node, t, snaps[0].version(t)) for t in snaps[0].type_urls()])
        cache.set_snapshot(node, snaps[0])
        envoy.start()
        await watch.wait(30)
        samples: list[float] = []
        for i, snap in enumerate(snaps[1:], start=1):
            watch.expect([(node, r.ROUTE, snap.version(r.ROUTE))])
            t0 = time.perf_counter()
            cache.set_snapshot(node, snap)
            await watch.wait(10)
            if i > warmup:
                samples.append(time.perf_counter() - t0)
        return samples
    finally:
        envoy.stop()
        await server.stop(0)


async def floor_route_change(snaps: list[Snapshot], warmup: int) -> list[float]:
    bare = BareAds()
    port = await bare.start()
    try:
        with ClientProcess(port, 1, "floor-a", r.ROUTE):
            await wait_streams(bare, 1)
            samples = []
            for i, snap in enumerate(snaps[1:], start=1):
                dt = await bare.push(sotw_bytes(snap, r.ROUTE, str(i)))
                if i > warmup:
                    samples.append(dt)
            return samples
    finally:
        await bare.stop()


# --- (b) one change -> N streams ---------------------------------------------------------------------


def fanout_snapshots(reps: int) -> list[Snapshot]:
    return [
        Snapshot.build([static_cluster(f"svc-{j}", SINK_PORT, 1000 + i) for j in range(5)])
        for i in range(reps + 1)
    ]


async def bench_fanout(streams: int, snaps: list[Snapshot]) -> list[float]:
    server, cache, watch, port = await start_meshctl()
    nodes = [f"fan-{i}" for i in range(streams)]
    try:
        for n in nodes:
            cache.set_snapshot(n, snaps[0])
        watch.expect([(n, r.CLUSTER, snaps[0].version(r.CLUSTER)) for n in nodes])
        with ClientProcess(port, streams, "fan", r.CLUSTER):
            await watch.wait(120)
            samples = []
            for snap in snaps[1:]:
                await asyncio.sleep(0.2)
                watch.expect([(n, r.CLUSTER, snap.version(r.CLUSTER)) for n in nodes])
                t0 = time.perf_counter()
                for n in nodes:
                    cache.set_snapshot(n, snap)
                await watch.wait(60)
                samples.append(time.perf_counter() - t0)
            return samples
    finally:
        await server.stop(0)


async def floor_fanout(streams: int, snaps: list[Snapshot]) -> list[float]:
    bare = BareAds()
    port = await bare.start()
    try:
        with ClientProcess(port, streams, "floor-b", r.CLUSTER):
            await wait_streams(bare, streams, 120)
            await bare.push(sotw_bytes(snaps[0], r.CLUSTER))
            samples = []
            for i, snap in enumerate(snaps[1:], start=2):
                await asyncio.sleep(0.2)
                samples.append(await bare.push(sotw_bytes(snap, r.CLUSTER, str(i))))
            return samples
    finally:
        await bare.stop()


# --- (c) 10k clusters: delta vs SotW ----------------------------------------------------------------


async def bench_big(ads: str, snaps: list[Snapshot]) -> list[float]:
    server, cache, watch, port = await start_meshctl()
    node = f"big-{ads}"
    envoy = EnvoyProcess.for_node(node, port, ads=ads)  # type: ignore[arg-type]
    # Per-cluster stats would dominate Envoy's memory at 10k clusters and are not under test.
    envoy.bootstrap["stats_config"] = {"stats_matcher": {"reject_all": True}}
    try:
        cache.set_snapshot(node, snaps[0])
        watch.expect([(node, r.CLUSTER, snaps[0].version(r.CLUSTER))])
        envoy.start()
        await watch.wait(180)
        samples = []
        for snap in snaps[1:]:
            await asyncio.sleep(0.3)
            watch.expect([(node, r.CLUSTER, snap.version(r.CLUSTER))])
            t0 = time.perf_counter()
            cache.set_snapshot(node, snap)
            await watch.wait(120)
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        envoy.stop()
        await server.stop(0)


# --- report -------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    warmup = 10
    listener_port = free_port()
    print(f"building snapshots ({args.changes} route changes, {args.clusters} clusters)...", flush=True)
    snaps_a = route_snapshots(listener_port, args.changes + warmup + 1)
    snaps_b = fanout_snapshots(args.reps)
    # Base, then alternate between two variants that differ from each other in one cluster only:
    # every push changes exactly one cluster, and 10k-cluster snapshots are built just three times.
    base, odd, even = (
        Snapshot.build(many_static_clusters(args.clusters, SINK_PORT, changed=changed))
        for changed in ({}, {7: 2000}, {7: 3000})
    )
    big = [base] + [odd if k % 2 else even for k in range(1, args.reps + 1)]

    print("(a) route change -> Envoy ACK ...", flush=True)
    a_sotw = await bench_route_change("sotw", snaps_a, listener_port, warmup)
    a_delta = await bench_route_change("delta", snaps_a, listener_port, warmup)
    a_floor = await floor_route_change(snaps_a, warmup)
    print(f"(b) one change -> {args.streams} streams ...", flush=True)
    b_mesh = await bench_fanout(args.streams, snaps_b)
    b_floor = await floor_fanout(args.streams, snaps_b)
    print(f"(c) {args.clusters} clusters, one changed ...", flush=True)
    c_delta = await bench_big("delta", big)
    c_sotw = await bench_big("sotw", big)

    res: dict[str, Any] = {
        "a_sotw_p50": pct(a_sotw, 0.5), "a_sotw_p99": pct(a_sotw, 0.99),
        "a_delta_p50": pct(a_delta, 0.5), "a_delta_p99": pct(a_delta, 0.99),
        "a_floor_p50": pct(a_floor, 0.5), "a_floor_p99": pct(a_floor, 0.99),
        "b_mesh": statistics.median(b_mesh), "b_floor": statistics.median(b_floor),
        "c_delta": statistics.median(c_delta), "c_sotw": statistics.median(c_sotw),
        "samples": {"a": len(a_sotw), "b": len(b_mesh), "c": len(c_delta)},
    }  # fmt: skip
    res["c_ratio"] = res["c_sotw"] / res["c_delta"]
    res["runtime_s"] = time.monotonic() - started

    out = await asyncio.to_thread(
        subprocess.run, [envoy_binary(), "--version"], capture_output=True, text=True, check=False
    )
    found = re.search(r"/(\d+\.\d+\.\d+)/", out.stdout)
    print()
    print(
        f"meshctl xDS bench — Envoy {found.group(1) if found else '?'}, Python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, runtime {res['runtime_s']:.0f} s"
    )
    head = f"{'scenario':<52}{'meshctl':>12}{'floor':>12}{'ratio':>9}  {'target':<14}verdict"
    print(head)
    print("-" * len(head))
    for label, mesh, floor in (
        (
            f"(a) route change -> Envoy ACK, SotW   p50  (n={len(a_sotw)})",
            res["a_sotw_p50"],
            res["a_floor_p50"],
        ),
        ("                                      p99", res["a_sotw_p99"], res["a_floor_p99"]),
        (
            f"(a) route change -> Envoy ACK, delta  p50  (n={len(a_delta)})",
            res["a_delta_p50"],
            res["a_floor_p50"],
        ),
        ("                                      p99", res["a_delta_p99"], res["a_floor_p99"]),
        (
            f"(b) 1 change -> {args.streams} streams all ACK (median of {args.reps})",
            res["b_mesh"],
            res["b_floor"],
        ),
    ):
        ratio = mesh / floor
        print(
            f"{label:<52}{ms(mesh):>12}{ms(floor):>12}{ratio:>8.2f}x  {'<= 1.5x floor':<14}{verdict(ratio <= 1.5)}"
        )
    print(f"(c) {args.clusters} clusters, 1 changed (median of {args.reps}):")
    print(f"{'    delta push -> ACK':<52}{ms(res['c_delta']):>12}")
    print(f"{'    SotW full resend -> ACK':<52}{ms(res['c_sotw']):>12}")
    print(
        f"{'    SotW / delta':<52}{'':>12}{'':>12}{res['c_ratio']:>8.1f}x  {'>= 20x':<14}{verdict(res['c_ratio'] >= 20)}"
    )
    print("floors: a bare grpc.aio server pushing the same serialized DiscoveryResponse bytes to the same")
    print("ACKing client code (separate process); (c) compares two real Envoys, delta vs SotW.")
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        port, streams, prefix, type_url = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
        asyncio.run(client_main(port, streams, prefix, type_url))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200, help="route changes measured in (a)")
    parser.add_argument("--streams", type=int, default=1000, help="ADS streams in (b)")
    parser.add_argument("--clusters", type=int, default=10_000, help="clusters Envoy holds in (c)")
    parser.add_argument("--reps", type=int, default=9, help="repetitions of (b) and (c)")
    parser.add_argument("--json", type=Path, help="also write the figures (seconds) as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
