"""What every ADS stream does, whatever its variant: identify the node, wait for its snapshot,
interleave client requests with snapshot changes, and send responses one decision at a time.

The variant (SotW or delta) supplies ``handle`` (apply one request to per-type state) and
``next_response`` (the next response to send, or None). Both are synchronous and pure with respect
to I/O, which keeps the protocol logic testable and the loop here small.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from typing import Any, ClassVar, Generic, TypeVar

import grpc

from meshctl.xds import resources as r
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.snapshot import Snapshot
from meshctl.xds.status import NodeInfo, ProxyStatusRegistry, StreamKind

log = logging.getLogger("meshctl.xds")

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# Fire-and-forget callback tasks must be referenced somewhere or they can be garbage-collected mid-run.
_background: set[asyncio.Task[Any]] = set()


class XdsCallbacks:
    """Optional hooks; subclass and override what you need (sync or ``async def``).

    Any object with any subset of these methods works too. Exceptions are logged, never propagated.
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


class CallbackRunner:
    def __init__(self, target: object | None):
        self._target = target

    async def call(self, name: str, *args: Any, wait_s: float | None = None) -> None:
        fn = getattr(self._target, name, None)
        if fn is None:
            return
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                _background.add(task)
                task.add_done_callback(_finish)
                # shield: a slow hook is waited for at most `timeout`, but never cancelled half-way.
                await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            log.warning("xds callback %s still running after %.1fs; continuing", name, wait_s)
        except Exception:
            log.exception("xds callback %s failed", name)

    def fire(self, name: str, *args: Any) -> None:
        """Call without waiting (used while a stream is being torn down)."""
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


def _finish(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("xds callback failed: %r", exc)


class StreamContext:
    """What a variant needs from the shared loop while deciding: node, status, callbacks."""

    def __init__(self, node: NodeInfo, status: ProxyStatusRegistry, callbacks: CallbackRunner):
        self.node = node
        self.status = status
        self.callbacks = callbacks
        self._nonce = 0
        self._warned: set[str] = set()

    def next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)

    def known_type(self, type_url: str) -> bool:
        if type_url in r.KNOWN_TYPES:
            return True
        if type_url not in self._warned:
            self._warned.add(type_url)
            log.warning("node %s: ignoring requests for unknown type URL %r", self.node.id, type_url)
        return False

    async def acked(self, type_url: str, version: str) -> None:
        self.status.record_ack(self.node.id, type_url, version)
        await self.callbacks.call("on_ack", self.node.id, type_url, version)

    async def nacked(self, type_url: str, version: str, error: str) -> None:
        log.warning("node %s NACKed %s version %s: %s", self.node.id, r.SHORT_NAMES[type_url], version, error)
        self.status.record_nack(self.node.id, type_url, version, error)
        await self.callbacks.call("on_nack", self.node.id, type_url, version, error)

    def sent(self, type_url: str, version: str) -> None:
        self.status.record_sent(self.node.id, type_url, version)


class AdsStream(ABC, Generic[Req, Resp]):
    kind: ClassVar[StreamKind]

    def __init__(
        self,
        cache: SnapshotCache,
        status: ProxyStatusRegistry,
        callbacks: CallbackRunner,
        snapshot_wait_s: float,
    ):
        self.cache = cache
        self.status = status
        self.callbacks = callbacks
        self.snapshot_wait_s = snapshot_wait_s
        self.snapshot: Snapshot | None = None
        self._inbox: collections.deque[Req] = collections.deque()
        self._wake = asyncio.Event()
        self._reader_done = False

    # -- variant hooks -------------------------------------------------------------------------
    @abstractmethod
    def setup(self, ctx: StreamContext) -> None: ...

    @abstractmethod
    async def handle(self, request: Req) -> None: ...

    @abstractmethod
    def next_response(self) -> Resp | None: ...

    # -- shared loop ---------------------------------------------------------------------------
    async def run(
        self, requests: AsyncIterator[Req], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Resp]:
        try:
            first: Any = await anext(requests)
        except StopAsyncIteration:
            return
        if not first.HasField("node") or not first.node.id:
            log.warning("rejecting %s stream: first request has no node id", self.kind)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first request must carry node.id")
        node = NodeInfo.from_proto(first.node)
        ctx = StreamContext(node, self.status, self.callbacks)
        self.setup(ctx)
        token = self.status.open(node, self.kind)
        log.info("node %s (%s) opened %s ADS stream", node.id, node.cluster, self.kind)
        reader = watcher = None
        try:
            # Read ahead while the baseline snapshot is being built, so that requests which arrive
            # together are answered together, in push order.
            self._inbox.append(first)
            reader = asyncio.create_task(self._read(requests))
            await self.callbacks.call("on_stream_open", node, wait_s=self.snapshot_wait_s)
            self.snapshot = self.cache.get_snapshot(node.id)
            if self.snapshot is None:
                try:
                    self.snapshot = await asyncio.wait_for(
                        self.cache.wait_for_change(node.id, None), self.snapshot_wait_s
                    )
                except TimeoutError:
                    log.warning(
                        "node %s: no snapshot after %.1fs; waiting for one", node.id, self.snapshot_wait_s
                    )
            watcher = asyncio.create_task(self._watch(node.id))
            while True:
                self._wake.clear()
                while self._inbox:
                    request = self._inbox.popleft()
                    if (other := self._other_node_id(request, node.id)) is not None:
                        log.warning("node %s: stream sent a different node id %r; closing", node.id, other)
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"node id changed mid-stream from {node.id!r} to {other!r}",
                        )
                    await self.handle(request)
                if self.snapshot is not None:
                    while (response := self.next_response()) is not None:
                        yield response
                if self._reader_done and not self._inbox:
                    return
                await self._wake.wait()
        finally:
            for task in (reader, watcher):
                if task is not None:
                    task.cancel()
            self.status.close(node.id, token)
            log.info("node %s closed %s ADS stream", node.id, self.kind)
            self.callbacks.fire("on_stream_closed", node.id)

    @staticmethod
    def _other_node_id(request: Any, node_id: str) -> str | None:
        if request.HasField("node") and request.node.id and request.node.id != node_id:
            return str(request.node.id)
        return None

    async def _read(self, requests: AsyncIterator[Req]) -> None:
        try:
            async for request in requests:
                self._inbox.append(request)
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The client went away or sent garbage; the main loop ends the stream cleanly.
            log.debug("ADS stream read ended: %r", exc)
        finally:
            self._reader_done = True
            self._wake.set()

    async def _watch(self, node_id: str) -> None:
        while True:
            self.snapshot = await self.cache.wait_for_change(node_id, self.snapshot)
            self._wake.set()
