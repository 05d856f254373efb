"""Real upstream servers the proxies route to: HTTP (meshctl.local.upstream) and gRPC (generic handler)."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc

from meshctl.local.upstream import UpstreamServer

# The one RPC the gRPC upstream serves: request bytes are ignored, the reply is the server's
# name. Raw bytes on both sides so the client subprocess needs no generated code.
GRPC_SERVICE = "meshctl.test.Who"
GRPC_METHOD = "Name"
GRPC_PATH = f"/{GRPC_SERVICE}/{GRPC_METHOD}"

__all__ = ["GRPC_PATH", "GrpcUpstream", "UpstreamServer"]


class GrpcUpstream:
    """A real gRPC server (HTTP/2) answering `GRPC_PATH` with its name; counts the calls it served."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self._requested_port = port
        self._server: grpc.Server | None = None
        self.port = 0
        self._lock = threading.Lock()
        self._hits = 0

    def _name(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self._hits += 1
        return self.name.encode()

    @property
    def hits(self) -> int:
        with self._lock:
            return self._hits

    def start(self) -> GrpcUpstream:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            GRPC_SERVICE,
            {GRPC_METHOD: grpc.unary_unary_rpc_method_handler(self._name)},  # bytes in, bytes out
        )
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port(f"127.0.0.1:{self._requested_port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(5)

    def __enter__(self) -> GrpcUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
