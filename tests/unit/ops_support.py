"""Support for the tracing and metrics tests: a control plane serving xDS on a free port, and a
fake sidecar — one in-process SotW ADS stream that announces a service and zone like Envoy does,
subscribes to every type, and ACKs (or NACKs, for the types it is told to reject) what it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.model import ContractRequest, Endpoint, Link, ProviderSpec, Sla, TopologyFile, Zone
from meshctl.store.memory import MemoryStore
from meshctl.xds import resources as r

TOPOLOGY = TopologyFile(
    zones=[Zone(name="eu-a", region="eu"), Zone(name="eu-b", region="eu")],
    links=[Link(a="eu-a", b="eu-b", latency_ms=2.0)],
)


def provider(pid: str, zone: str = "eu-a", capacity: float = 100, port: int = 9000) -> ProviderSpec:
    return ProviderSpec(
        id=pid,
        capabilities=["infer"],
        zone=zone,
        endpoints=[Endpoint(address="127.0.0.1", port=port)],
        capacity_rps=capacity,
        latency_p99_ms=5,
        cost_per_1k=1.0,
    )


def request(rps: float, consumer: str = "checkout", zone: str | None = None) -> ContractRequest:
    return ContractRequest(
        consumer=consumer, consumer_zone=zone, capability="infer", sla=Sla(p99_latency_ms=50, rps=rps)
    )


@contextlib.asynccontextmanager
async def running_plane() -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(MemoryStore(), policies=PolicySet(), topology=TOPOLOGY, tick_s=0.05)
    await plane.start("127.0.0.1", 0)
    try:
        yield plane
    finally:
        await plane.stop()


class FakeSidecar:
    """One ADS stream for `node_id` fronting `service` in `zone`."""

    def __init__(
        self, xds_port: int, node_id: str, service: str, zone: str, nack: Iterable[str] = ()
    ) -> None:
        self.port = xds_port
        self.node_id = node_id
        self.service = service
        self.zone = zone
        self.nack = frozenset(nack)  # type URLs this sidecar rejects
        self.acked: dict[str, str] = {}
        self.nacked: list[tuple[str, str]] = []
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeSidecar:
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        self._call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel).StreamAggregatedResources()
        node = base_pb2.Node(id=self.node_id, cluster=self.service)
        node.locality.zone = self.zone
        for i, t in enumerate(r.ORDER):
            # LDS/CDS: legacy wildcard (no names); EDS/RDS can only be wildcard by naming "*".
            names = [] if t in r.WILDCARD_TYPES else ["*"]
            req = discovery_pb2.DiscoveryRequest(type_url=t, resource_names=names)
            if i == 0:
                req.node.CopyFrom(node)
            await self._call.write(req)
        self._task = asyncio.create_task(self._answer(), name=f"sidecar-{self.node_id}")
        return self

    async def _answer(self) -> None:
        assert self._call is not None
        while True:
            resp = await self._call.read()
            if resp is grpc.aio.EOF:
                return
            t = resp.type_url
            names = [] if t in r.WILDCARD_TYPES else ["*"]
            if t in self.nack:
                self.nacked.append((t, resp.version_info))
                reply = discovery_pb2.DiscoveryRequest(
                    type_url=t,
                    version_info=self.acked.get(t, ""),
                    response_nonce=resp.nonce,
                    resource_names=names,
                    error_detail=status_pb2.Status(code=3, message=f"fake sidecar rejects {t}"),
                )
            else:
                self.acked[t] = resp.version_info
                reply = discovery_pb2.DiscoveryRequest(
                    type_url=t,
                    version_info=resp.version_info,
                    response_nonce=resp.nonce,
                    resource_names=names,
                )
            await self._call.write(reply)

    async def __aexit__(self, *_: object) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task
        if self._channel is not None:
            await self._channel.close()


async def until(check: object, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll `check()` (sync callable) until it is truthy."""
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
