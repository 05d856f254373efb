"""A minimal in-process SotW ADS client (grpc.aio): subscribes, ACKs every response it gets.

Stands in for many proxies at once where starting that many Envoys would be absurd.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from meshctl.xds import resources as r


class AdsClient:
    """One ADS stream for `node_id`, wildcard-subscribed to `type_urls`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node_id: str,
        type_urls: Sequence[str] = (r.CLUSTER,),
        on_response: Callable[[AdsClient, discovery_pb2.DiscoveryResponse], None] | None = None,
    ) -> None:
        self.channel = channel
        self.node_id = node_id
        self.type_urls = tuple(type_urls)
        self.on_response = on_response
        self.versions: dict[str, str] = {}
        self.responses = 0
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._call: grpc.aio.StreamStreamCall | None = None

    def start(self) -> AdsClient:
        self._task = asyncio.create_task(self._run(), name=f"ads-{self.node_id}")
        return self

    async def _run(self) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        call = stub.StreamAggregatedResources()
        self._call = call
        try:
            node = base_pb2.Node(id=self.node_id, cluster="bench")
            for i, type_url in enumerate(self.type_urls):
                req = discovery_pb2.DiscoveryRequest(type_url=type_url)
                if i == 0:
                    req.node.CopyFrom(node)
                await call.write(req)
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    return
                self.responses += 1
                self.versions[resp.type_url] = resp.version_info
                await call.write(
                    discovery_pb2.DiscoveryRequest(
                        type_url=resp.type_url,
                        version_info=resp.version_info,
                        response_nonce=resp.nonce,
                    )
                )
                if self.on_response is not None:
                    self.on_response(self, resp)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc
        except Exception as exc:
            self.error = exc

    async def stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
