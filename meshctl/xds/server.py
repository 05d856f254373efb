"""The ADS gRPC server: StreamAggregatedResources (SotW) and DeltaAggregatedResources (delta).

Each stream runs independently; a failure in one is logged and ends only that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from meshctl.errors import MeshError
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.callbacks import CallbackRunner
from meshctl.xds.delta import DeltaStream
from meshctl.xds.sotw import SotwStream
from meshctl.xds.status import ProxyStatusRegistry
from meshctl.xds.stream import AdsStream

log = logging.getLogger("meshctl.xds")

_MB = 1024 * 1024
SERVER_OPTIONS: list[tuple[str, Any]] = [
    # Every proxy holds one long-lived stream; HTTP/2's default stream cap would throttle a big mesh.
    ("grpc.max_concurrent_streams", 100_000),
    # Find dead proxies behind silent NATs/load balancers within ~40 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Envoy bootstraps often set aggressive HTTP/2 keepalives: accept them instead of sending GOAWAY.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * _MB),
    ("grpc.max_send_message_length", 256 * _MB),
    # Two servers must never share a port silently (tests bind port 0 in parallel).
    ("grpc.so_reuseport", 0),
]


ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _serialize(response: bytes | Message) -> bytes:
    # Streams hand over responses already on the wire format (resource bytes are serialised once
    # per snapshot and shared by every stream); anything else is a regular message.
    return response if isinstance(response, bytes) else response.SerializeToString()


def _handlers(server: XdsServer) -> grpc.GenericRpcHandler:
    async def sotw(_requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        await server._serve(SotwStream, context)

    async def delta(_requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        await server._serve(DeltaStream, context)

    return grpc.method_handlers_generic_handler(
        ADS_SERVICE,
        {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                sotw,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_serialize,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                delta,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_serialize,
            ),
        },
    )


class XdsServer:
    """ADS over gRPC for every proxy, serving per-node snapshots from ``cache``.

    ``callbacks``: any object with any of on_stream_open / on_ack / on_nack / on_stream_closed
    (sync or async); see ``meshctl.xds.stream.XdsCallbacks``.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        status: ProxyStatusRegistry,
        callbacks: object | None = None,
        *,
        snapshot_wait_s: float = 5.0,
        options: list[tuple[str, Any]] | None = None,
    ):
        self.cache = cache
        self.status = status
        self.callbacks = CallbackRunner(callbacks)
        self.snapshot_wait_s = snapshot_wait_s
        self._options = list(options) if options is not None else SERVER_OPTIONS
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._streams: set[AdsStream[Any]] = set()

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve; returns the bound port (``port=0`` picks a free one)."""
        if self._server is not None:
            raise MeshError("xDS server already started")
        server = grpc.aio.server(options=self._options)
        server.add_generic_rpc_handlers((_handlers(self),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise MeshError(f"cannot bind xDS server to {address}: {exc}") from exc
        if not bound:
            raise MeshError(f"cannot bind xDS server to {address}")
        await server.start()
        self._server, self.port = server, bound
        log.info("xDS server listening on %s:%d", host, bound)
        return bound

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting streams and close open ones (within ``grace`` seconds)."""
        server, self._server = self._server, None
        if server is None:
            return
        # End streams with status OK first, so proxies reconnect promptly and gRPC has nothing to
        # cancel; whatever is still running when the wait ends is cancelled by server.stop.
        streams = list(self._streams)
        for stream in streams:
            stream.close()
        if streams:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(s.finished.wait() for s in streams)), max(grace or 0.0, 0.1)
                )
        await server.stop(grace)
        log.info("xDS server stopped")

    async def _serve(self, kind: type[AdsStream[Any]], context: grpc.aio.ServicerContext) -> None:
        stream = kind(self.cache, self.status, self.callbacks, self.snapshot_wait_s)
        self._streams.add(stream)
        try:
            await stream.run(context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception:
            # A bug on one stream must not take the server down; the proxy reconnects.
            log.exception("ADS %s stream failed", kind.kind)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in xDS server")
        finally:
            self._streams.discard(stream)
