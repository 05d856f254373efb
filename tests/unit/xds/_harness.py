"""In-process harness: the real XdsServer on a free loopback port and scriptable ADS clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from meshctl.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.server import XdsServer
from meshctl.xds.status import NodeInfo, ProxyStatusRegistry

SHORT = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS"}


def node(node_id: str, *, cluster: str = "svc", zone: str = "z1") -> base_pb2.Node:
    n = base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="test-client", user_agent_version="1.0")
    n.locality.zone = zone
    n.locality.region = "r1"
    return n


def names_of(response: Any) -> list[str]:
    """Resource names in a SotW or delta response."""
    out = []
    for res in response.resources:
        if isinstance(res, any_pb2.Any):
            out.append(_name_of_any(res))
        else:
            out.append(res.name)
    return sorted(out)


def _name_of_any(packed: any_pb2.Any) -> str:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import route_pb2

    for cls in (cluster_pb2.Cluster, listener_pb2.Listener, route_pb2.RouteConfiguration):
        if packed.Is(cls.DESCRIPTOR):
            msg = cls()
            packed.Unpack(msg)
            return str(msg.name)
    cla = endpoint_pb2.ClusterLoadAssignment()
    packed.Unpack(cla)
    return str(cla.cluster_name)


@dataclass
class Recorder:
    """Callbacks that remember every call (async on purpose: exercises the awaitable path)."""

    opened: list[NodeInfo] = field(default_factory=list)
    acks: list[tuple[str, str, str]] = field(default_factory=list)
    nacks: list[tuple[str, str, str, str]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    async def on_stream_open(self, node: NodeInfo) -> None:
        self.opened.append(node)

    async def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append((node_id, type_url, version))

    async def on_nack(self, node_id: str, type_url: str, version: str, error: str) -> None:
        self.nacks.append((node_id, type_url, version, error))

    def on_stream_closed(self, node_id: str) -> None:
        self.closed.append(node_id)


class AdsClient:
    """One ADS stream (SotW or delta) with a background reader, so waits never cancel the RPC."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str, *, delta: bool = False):
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.node_id = node_id
        self.delta = delta
        self.call = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.received: list[Any] = []
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self._sent_node = False
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    break
                self.received.append(msg)
                self.responses.put_nowait(msg)
        except grpc.aio.AioRpcError as exc:
            self.code, self.details = exc.code(), exc.details()
            return
        except asyncio.CancelledError:
            return
        self.code = await self.call.code()
        self.details = await self.call.details()

    # -- sending ---------------------------------------------------------------------------------
    async def send(self, req: Any) -> None:
        await self.call.write(req)

    def _with_node(self, req: Any, with_node: bool | None) -> Any:
        if with_node or (with_node is None and not self._sent_node):
            req.node.CopyFrom(node(self.node_id))
            self._sent_node = True
        return req

    async def request(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
        with_node: bool | None = None,
    ) -> None:
        """SotW DiscoveryRequest; the node is attached to the first request only (like Envoy)."""
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(self._with_node(req, with_node))

    async def ack(self, resp: Any, names: Iterable[str] | None = None) -> None:
        if self.delta:
            await self.delta_request(resp.type_url, nonce=resp.nonce)
        else:
            await self.request(
                resp.type_url, names if names is not None else (), version=resp.version_info, nonce=resp.nonce
            )

    async def nack(self, resp: Any, error: str, *, version: str = "", names: Iterable[str] = ()) -> None:
        if self.delta:
            await self.delta_request(resp.type_url, nonce=resp.nonce, error=error)
        else:
            await self.request(resp.type_url, names, version=version, nonce=resp.nonce, error=error)

    async def delta_request(
        self,
        type_url: str,
        *,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        initial: dict[str, str] | None = None,
        nonce: str = "",
        error: str | None = None,
        with_node: bool | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=initial or {},
            response_nonce=nonce,
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(self._with_node(req, with_node))

    # -- receiving -------------------------------------------------------------------------------
    async def recv(self, timeout: float = 5.0) -> Any:
        try:
            return await asyncio.wait_for(self.responses.get(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.node_id}: no response within {timeout}s (status {self.code})"
            ) from None

    async def expect_none(self, within: float = 0.3) -> None:
        await asyncio.sleep(within)
        assert self.responses.empty(), f"unexpected response: {self.responses.get_nowait()}"

    async def closed_with(self, timeout: float = 5.0) -> grpc.StatusCode | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.code

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@dataclass
class Harness:
    cache: SnapshotCache
    status: ProxyStatusRegistry
    server: XdsServer
    port: int
    recorder: Recorder
    channel: grpc.aio.Channel
    clients: list[AdsClient] = field(default_factory=list)

    def client(
        self, node_id: str, *, delta: bool = False, channel: grpc.aio.Channel | None = None
    ) -> AdsClient:
        c = AdsClient(channel or self.channel, node_id, delta=delta)
        self.clients.append(c)
        return c

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_server(callbacks: object | None = None, **kw: Any) -> AsyncIterator[Harness]:
    cache = SnapshotCache()
    status = ProxyStatusRegistry()
    recorder = Recorder()
    server = XdsServer(cache, status, callbacks if callbacks is not None else recorder, **kw)
    port = await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    harness = Harness(cache, status, server, port, recorder, channel)
    try:
        yield harness
    finally:
        for c in harness.clients:
            await c.close()
        await channel.close()
        await server.stop(0)
