"""Real-process test harness: Envoy, HTTP/gRPC upstreams, Redis, ports and polling.

Imported as ``harness`` (pytest puts ``tests/`` on sys.path via tests/conftest.py); benchmarks
add ``tests/`` to sys.path themselves.
"""

from .envoy import REPO_ROOT, EnvoyProcess, envoy_binary
from .net import (
    HttpResponse,
    ProcessExited,
    WaitTimeout,
    ahttp_request,
    free_port,
    http_request,
    port_open,
    wait_for,
    wait_for_sync,
)
from .redis import RedisServer, redis_binary
from .upstream import GRPC_PATH, GrpcUpstream, UpstreamServer

__all__ = [
    "GRPC_PATH",
    "REPO_ROOT",
    "EnvoyProcess",
    "GrpcUpstream",
    "HttpResponse",
    "ProcessExited",
    "RedisServer",
    "UpstreamServer",
    "WaitTimeout",
    "ahttp_request",
    "envoy_binary",
    "free_port",
    "http_request",
    "port_open",
    "redis_binary",
    "wait_for",
    "wait_for_sync",
]
