"""meshctl's own ADS server on a free loopback port, with a fresh cache and status registry."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from meshctl.xds import ProxyStatusRegistry, SnapshotCache, XdsServer


@dataclass
class RunningXds:
    server: XdsServer
    cache: SnapshotCache
    status: ProxyStatusRegistry
    port: int


@contextlib.asynccontextmanager
async def running_xds(callbacks: object | None = None, **kw: object) -> AsyncIterator[RunningXds]:
    """Start an XdsServer on 127.0.0.1:<free port>; stop it (grace 0) on exit."""
    cache, status = SnapshotCache(), ProxyStatusRegistry()
    server = XdsServer(cache, status, callbacks, **kw)  # type: ignore[arg-type]
    port = await server.start("127.0.0.1", 0)
    try:
        yield RunningXds(server=server, cache=cache, status=status, port=port)
    finally:
        await server.stop(0)
