"""Real HTTP traffic through a sidecar, from the test's own event loop.

The control plane (and its xDS server) run in the same loop as the test, so the client must never
block it: this is a small asyncio HTTP/1.1 client over keep-alive connections, cheap enough to
pace a few hundred requests per second on one core. Each answer records its status, the
`x-upstream` header the test upstreams set (the provider that served it) and the headers Envoy
added (429s carry `x-mesh-ratelimited`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int  # 0: the connection failed or timed out
    headers: Mapping[str, str]
    at: float  # monotonic time the request was sent
    error: str = ""
    body: bytes = b""

    @property
    def upstream(self) -> str | None:
        return self.headers.get("x-upstream")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Tally:
    replies: list[Reply] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.replies)

    @property
    def by_upstream(self) -> Counter[str]:
        return Counter(r.upstream for r in self.replies if r.status == 200 and r.upstream)

    def failed(self) -> list[Reply]:
        return [r for r in self.replies if r.status != 200]

    def shares(self) -> dict[str, float]:
        """Percent of the successful requests each upstream served."""
        by = self.by_upstream
        total = sum(by.values()) or 1
        return {k: 100.0 * v / total for k, v in by.items()}

    def since(self, t: float) -> Tally:
        return Tally([r for r in self.replies if r.at >= t])


class _Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        w, self.writer, self.reader = self.writer, None, None
        if w is not None:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                body += (await self.reader.readexactly(size + 2))[:size]
                if size == 0:
                    break
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body


def _raw(host: str, path: str, headers: Mapping[str, str] | None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


async def _one(conn: _Conn, raw: bytes, timeout: float) -> Reply:
    at = time.monotonic()
    try:
        status, headers, body = await asyncio.wait_for(conn.request(raw), timeout)
        return Reply(status, headers, at, body=body)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as exc:
        await conn.close()  # a half-read answer would poison the next one on this connection
        return Reply(0, {}, at, error=repr(exc))


async def fetch(
    port: int, host: str, path: str = "/", *, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> Reply:
    """One request on a fresh connection."""
    conn = _Conn(port)
    try:
        return await _one(conn, _raw(host, path, headers), timeout)
    finally:
        await conn.close()


async def paced(
    port: int,
    host: str,
    n: int,
    rps: float,
    *,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    connections: int = 16,
    timeout: float = 5.0,
    into: Tally | None = None,
) -> Tally:
    """`n` requests started at a steady `rps` (request i at start + i/rps) over keep-alive connections.

    A request is never started early; if every connection is busy it starts late, so the offered
    rate never exceeds `rps` (which keeps a test under a contract's rate limit).
    """
    tally = into if into is not None else Tally()
    raw = _raw(host, path, headers)
    start = time.monotonic()
    nxt = iter(range(n))

    async def worker() -> None:
        conn = _Conn(port)
        try:
            for i in nxt:
                delay = start + i / rps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tally.replies.append(await _one(conn, raw, timeout))
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(min(connections, n))))
    return tally


async def burst(
    port: int, host: str, n: int, *, headers: Mapping[str, str] | None = None, connections: int = 16
) -> Tally:
    """`n` requests as fast as `connections` keep-alive connections allow."""
    return await paced(port, host, n, 1e9, headers=headers, connections=connections)


def describe(tally: Tally, weights: Iterable[tuple[str, float]] = ()) -> str:
    shares = tally.shares()
    parts = [f"statuses {dict(tally.statuses)}"]
    parts += [f"{k}: weight {w:g}% observed {shares.get(k, 0.0):.1f}%" for k, w in weights]
    errors = Counter(r.error.split("(")[0] for r in tally.failed() if r.error)
    if errors:
        parts.append(f"errors {dict(errors)}")
    return "; ".join(parts)
