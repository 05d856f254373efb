"""Malformed and hostile ADS input: each case gets its defined behaviour, and a healthy proxy on
another stream keeps getting config throughout (one stream's failure never disturbs another)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshctl.xds import CLUSTER, ENDPOINT


def _load(alias: str, filename: str) -> ModuleType:
    # The helpers live with the xDS unit tests; load them by path (works in every pytest import mode).
    if alias in sys.modules:
        return sys.modules[alias]
    path = Path(__file__).resolve().parent.parent / "unit" / "xds" / filename
    spec = importlib.util.spec_from_file_location(alias, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


R = _load("xds_test_resources", "_resources.py")
H = _load("xds_test_harness", "_harness.py")

pytestmark = pytest.mark.integration


class Healthy:
    """A well-behaved proxy on its own stream; `check` proves it is still served."""

    def __init__(self, h: Any):
        self.h = h
        self.client = h.client("healthy")
        self.round = 0

    async def start(self) -> None:
        self.h.cache.set_snapshot("healthy", R.snapshot(["h0"]))
        await self.client.request(CLUSTER)
        await self.client.ack(await self.client.recv())

    async def check(self) -> None:
        self.round += 1
        snap = R.snapshot([f"h{self.round}"])
        self.h.cache.set_snapshot("healthy", snap)
        resp = await self.client.recv()
        assert resp.version_info == snap.version(CLUSTER)
        await self.client.ack(resp)
        st = self.h.status.get("healthy")
        assert st is not None and st.connected


@pytest.fixture
async def env() -> AsyncIterator[tuple[Any, Healthy]]:
    async with H.running_server() as h:
        healthy = Healthy(h)
        await healthy.start()
        yield h, healthy
        await healthy.check()


async def test_unknown_type_url_is_ignored(env: tuple[Any, Healthy]) -> None:
    h, healthy = env
    h.cache.set_snapshot("n1", R.snapshot(["a"]))
    c = h.client("n1")
    await c.request("type.googleapis.com/envoy.service.runtime.v3.Runtime", ["rt"])
    await c.request("not-a-type-url")
    await c.request("")
    await c.expect_none()
    await healthy.check()
    # The same stream still works for known types.
    await c.request(CLUSTER)
    assert H.names_of(await c.recv()) == ["a"]
    assert c.code is None


async def test_unknown_type_url_on_delta_is_ignored(env: tuple[Any, Healthy]) -> None:
    h, healthy = env
    h.cache.set_snapshot("n1", R.snapshot(["a"]))
    c = h.client("n1", delta=True)
    await c.delta_request("type.googleapis.com/envoy.config.bogus.v3.Thing", subscribe=["x"])
    await c.expect_none()
    await healthy.check()
    await c.delta_request(ENDPOINT, subscribe=["a"])
    assert [r.name for r in (await c.recv()).resources] == ["a"]


async def test_unknown_nonce_is_neither_ack_nor_nack(env: tuple[Any, Healthy]) -> None:
    h, healthy = env
    snap = R.snapshot(["a"])
    h.cache.set_snapshot("n1", snap)
    c = h.client("n1")
    await c.request(CLUSTER)
    resp = await c.recv()
    await c.request(CLUSTER, nonce="never-issued", error="bogus")
    await c.request(CLUSTER, version=resp.version_info, nonce="also-never-issued")
    await c.expect_none()
    t = h.status.get("n1").types[CLUSTER]
    assert t.last_nack is None and t.version_acked is None
    assert all(n[0] != "n1" for n in h.recorder.nacks)
    await healthy.check()
    await c.ack(resp)
    await h.wait_for(lambda: t.version_acked == snap.version(CLUSTER))


async def test_unknown_nonce_on_delta(env: tuple[Any, Healthy]) -> None:
    h, healthy = env
    h.cache.set_snapshot("n1", R.snapshot(["a"]))
    c = h.client("n1", delta=True)
    await c.delta_request(CLUSTER)
    resp = await c.recv()
    await c.delta_request(CLUSTER, nonce="999", error="bogus")
    await c.expect_none()
    assert h.status.get("n1").types[CLUSTER].last_nack is None
    await healthy.check()
    await c.ack(resp)
    await h.wait_for(lambda: h.status.get("n1").types[CLUSTER].version_acked is not None)


@pytest.mark.parametrize("delta", [False, True])
async def test_first_request_without_node_is_rejected(env: tuple[Any, Healthy], delta: bool) -> None:
    h, healthy = env
    c = h.client("ignored", delta=delta)
    if delta:
        await c.delta_request(CLUSTER, with_node=False)
    else:
        await c.request(CLUSTER, with_node=False)
    assert await c.closed_with() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node" in (c.details or "")
    assert h.status.get("ignored") is None
    await healthy.check()


@pytest.mark.parametrize("delta", [False, True])
async def test_node_id_changing_mid_stream_closes_the_stream(env: tuple[Any, Healthy], delta: bool) -> None:
    h, healthy = env
    h.cache.set_snapshot("n1", R.snapshot(["a"]))
    c = h.client("n1", delta=delta)
    if delta:
        await c.delta_request(CLUSTER)
    else:
        await c.request(CLUSTER)
    resp = await c.recv()
    c.node_id = "impostor"
    if delta:
        await c.delta_request(CLUSTER, nonce=resp.nonce, with_node=True)
    else:
        await c.request(CLUSTER, version=resp.version_info, nonce=resp.nonce, with_node=True)
    assert await c.closed_with() == grpc.StatusCode.INVALID_ARGUMENT
    assert "impostor" in (c.details or "")
    await h.wait_for(lambda: "n1" in h.recorder.closed)
    st = h.status.get("n1")
    assert st is not None and not st.connected
    assert h.status.get("impostor") is None
    await healthy.check()


async def test_undecodable_bytes_end_only_that_stream(env: tuple[Any, Healthy]) -> None:
    h, healthy = env
    # A bytes-in, bytes-out view of the ADS method, to send what no protobuf client would.
    raw = h.channel.stream_stream(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        request_serializer=None,
        response_deserializer=None,
    )
    call = raw()
    await call.write(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await healthy.check()

    # The same garbage later in an established stream ends that stream the same way.
    h.cache.set_snapshot("n1", R.snapshot(["a"]))
    call = raw()
    first = discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=H.node("n1"))
    await call.write(first.SerializeToString())
    response = discovery_pb2.DiscoveryResponse.FromString(await call.read())
    assert response.type_url == CLUSTER
    await call.write(b"\xff\xff garbage")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await healthy.check()


async def test_client_vanishing_mid_stream_is_cleaned_up(env: tuple[Any, Healthy]) -> None:
    h, healthy = env
    h.cache.set_snapshot("n1", R.snapshot(["a"]))
    c = h.client("n1")
    await c.request(CLUSTER)
    await c.recv()
    await c.close()
    await h.wait_for(lambda: not h.status.get("n1").connected)
    assert h.server.active_streams == 1  # only the healthy one
    await healthy.check()
