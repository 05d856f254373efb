"""1,000 concurrent ADS streams in one process: all connect, get config, ACK, and get the next push."""

from __future__ import annotations

import asyncio
import time

import grpc
import xds_test_harness as H
import xds_test_resources as R

from meshctl.xds import CLUSTER

STREAMS = 1000
CHANNELS = 10  # many streams per HTTP/2 connection, as behind a load balancer


async def test_thousand_concurrent_streams() -> None:
    async with H.running_server() as h:
        base = R.snapshot(["a", "b"])
        update = R.snapshot(["a", "b", "c"])
        for i in range(STREAMS):
            h.cache.set_snapshot(f"p{i}", base)
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{h.port}") for _ in range(CHANNELS)]
        try:
            clients = [h.client(f"p{i}", channel=channels[i % CHANNELS]) for i in range(STREAMS)]
            started = time.perf_counter()

            async def first_push(c: H.AdsClient) -> None:
                await c.request(CLUSTER)
                resp = await c.recv(60)
                assert resp.version_info == base.version(CLUSTER)
                await c.ack(resp)

            await asyncio.gather(*(first_push(c) for c in clients))
            connected = time.perf_counter() - started
            await h.wait_for(lambda: len(h.recorder.acks) == STREAMS, timeout=60)
            assert h.status.connected_count() == STREAMS
            assert h.server.active_streams == STREAMS

            started = time.perf_counter()
            for i in range(STREAMS):
                h.cache.set_snapshot(f"p{i}", update)

            async def second_push(c: H.AdsClient) -> None:
                resp = await c.recv(60)
                assert H.names_of(resp) == ["a", "b", "c"]

            await asyncio.gather(*(second_push(c) for c in clients))
            pushed = time.perf_counter() - started
            print(f"\n{STREAMS} streams: connect+first push+ACK {connected:.2f}s, push to all {pushed:.2f}s")
        finally:
            for c in h.clients:
                await c.close()
            h.clients.clear()
            for ch in channels:
                await ch.close()
