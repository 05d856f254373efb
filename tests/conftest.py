"""Fixtures shared by every test directory: real binaries, upstreams, an xDS server.

`tests/` is on sys.path (pytest's rootdir conftest insertion), so tests import the harness
as ``harness``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from harness import EnvoyProcess, GrpcUpstream, RedisServer, UpstreamServer, envoy_binary

if TYPE_CHECKING:
    from harness.xds import RunningXds


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    """The Envoy binary; fails (never skips) when it is missing."""
    return envoy_binary()


@pytest.fixture
def upstreams() -> Iterator[Callable[..., UpstreamServer]]:
    """Factory: ``upstreams("a")`` starts an HTTP upstream named "a"; all stop at teardown."""
    started: list[UpstreamServer] = []

    def make(name: str, port: int = 0, status: int = 200) -> UpstreamServer:
        server = UpstreamServer(name, port=port, status=status).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def grpc_upstreams() -> Iterator[Callable[..., GrpcUpstream]]:
    started: list[GrpcUpstream] = []

    def make(name: str, port: int = 0) -> GrpcUpstream:
        server = GrpcUpstream(name, port=port).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def envoys(envoy_bin: str) -> Iterator[Callable[..., EnvoyProcess]]:
    """Factory: ``envoys("node-1", xds_port, ads="delta")`` starts an Envoy; all stop at teardown."""
    started: list[EnvoyProcess] = []

    def make(node_id: str, xds_port: int, **kw: Any) -> EnvoyProcess:
        proc = EnvoyProcess.for_node(node_id, xds_port, binary=envoy_bin, **kw)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server (AOF on, fsync always) on a free port; its data dir is deleted after."""
    with RedisServer(appendonly=True, fsync="always") as server:
        yield server


@pytest.fixture
async def xds_server() -> AsyncIterator[RunningXds]:
    """meshctl's XdsServer on a free port with a fresh SnapshotCache and ProxyStatusRegistry."""
    # Imported here so that a broken meshctl.xds fails the xDS tests, not the whole collection.
    from harness.xds import running_xds

    async with running_xds() as running:
        yield running
