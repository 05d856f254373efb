"""Hooks the control plane plugs into the xDS server (all optional, sync or async)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any

from meshctl.xds.status import NodeInfo

log = logging.getLogger("meshctl.xds")

# Fire-and-forget callback tasks must be referenced somewhere or they can be garbage-collected mid-run.
_background: set[asyncio.Task[Any]] = set()


class XdsCallbacks:
    """Optional hooks; subclass and override what you need (sync or ``async def``).

    Any object with any subset of these methods works too. Exceptions are logged, never propagated.
    A hook runs on the stream's task: a slow ``on_ack`` delays only that proxy's stream.
    """

    def on_stream_open(self, node: NodeInfo) -> Awaitable[None] | None:
        """Before the first response: build the node's baseline snapshot now (bounded wait ~5 s)."""
        return None

    def on_ack(self, node_id: str, type_url: str, version: str) -> Awaitable[None] | None:
        return None

    def on_nack(self, node_id: str, type_url: str, version: str, error: str) -> Awaitable[None] | None:
        return None

    def on_stream_closed(self, node_id: str) -> Awaitable[None] | None:
        return None


def _finish(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("xds callback failed: %r", exc)


class CallbackRunner:
    def __init__(self, target: object | None):
        self._target = target

    def start(self, name: str, *args: Any) -> Awaitable[None] | None:
        """Call a hook: None once it has finished (any sync hook), else an awaitable that finishes it,
        logging its errors. Unlike ``call``, a sync hook costs no coroutine: this runs on every ACK."""
        fn = getattr(self._target, name, None)
        if fn is None:
            return None
        try:
            result = fn(*args)
        except Exception:
            log.exception("xds callback %s failed", name)
            return None
        if result is None or not inspect.isawaitable(result):
            return None
        return self._finish_call(name, result)

    @staticmethod
    async def _finish_call(name: str, result: Awaitable[Any]) -> None:
        try:
            await result
        except Exception:
            log.exception("xds callback %s failed", name)

    async def call(self, name: str, *args: Any, wait_s: float | None = None) -> None:
        """Run a hook; with ``wait_s``, wait at most that long (the hook keeps running, uncancelled)."""
        fn = getattr(self._target, name, None)
        if fn is None:
            return
        try:
            result = fn(*args)
            if not inspect.isawaitable(result):
                return
            if wait_s is None:
                await result
                return
            task = asyncio.ensure_future(result)
            _background.add(task)
            task.add_done_callback(_finish)
            await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            log.warning("xds callback %s still running after %.1fs; continuing", name, wait_s)
        except Exception:
            log.exception("xds callback %s failed", name)

    def fire(self, name: str, *args: Any) -> None:
        """Run a hook without waiting for it (used while a stream is being torn down)."""
        fn = getattr(self._target, name, None)
        if fn is None:
            return
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                _background.add(task)
                task.add_done_callback(_finish)
        except Exception:
            log.exception("xds callback %s failed", name)
