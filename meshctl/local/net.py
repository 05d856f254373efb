"""Ports, polling and plain HTTP for code that drives real local processes (demo, tests)."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class WaitTimeout(AssertionError):
    """A condition a test waited for never held; an AssertionError so pytest shows it as a failure."""


class ProcessExited(AssertionError):
    """A process a test depends on died; raised from inside a wait to end it at once."""


def wait_for_sync(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` (blocking) until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as exc:  # the thing we poll may not be up yet
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f"\nlast error: {last_exc!r}" if last_exc else ""
            if details is not None:
                extra += "\n" + details()
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


async def wait_for(
    predicate: Callable[[], T | Awaitable[T | None] | None],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
    details: Callable[[], str] | None = None,
) -> T:
    """Like `wait_for_sync` but yields to the event loop between polls.

    Tests that run the xDS server in their own loop must use this one: a blocking wait would
    starve the server the proxy is waiting on.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value  # type: ignore[return-value]
        except ProcessExited:
            raise
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f"\nlast error: {last_exc!r}" if last_exc else ""
            if details is not None:
                extra += "\n" + details()
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}{extra}")
        await asyncio.sleep(interval)


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    port: int,
    path: str = "/",
    *,
    method: str = "GET",
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> HttpResponse:
    """One HTTP/1.1 request to 127.0.0.1:port. Connection errors come back as status 0 with
    `error` set, so polling loops can treat "not yet listening" like any other miss."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    if host is not None:
        hdrs["Host"] = host
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    except OSError as exc:
        return HttpResponse(0, {}, b"", error=repr(exc))
    finally:
        conn.close()


async def ahttp_request(port: int, path: str = "/", **kw: Any) -> HttpResponse:
    """`http_request` off the event loop."""
    return await asyncio.to_thread(http_request, port, path, **kw)
