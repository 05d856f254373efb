"""What every ADS stream does, whatever its variant: identify the node, wait for its snapshot,
apply client requests, follow snapshot changes, and send responses one decision at a time.

The variant (SotW or delta) supplies ``handle`` (apply one request to per-type state) and
``next_response`` (the next response to send, or None). Both are synchronous and free of I/O,
which keeps the protocol logic testable and the loop here small.

Two tasks drive a stream: the reader applies each request as it arrives (so an ACK reaches the
callbacks without an extra hop), and the handler task pushes when the node's snapshot changes.
Both send through ``_push``; one push writes at a time, so responses leave in decision order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

import grpc
from google.protobuf.message import DecodeError

from meshctl.xds import resources as r
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.callbacks import CallbackRunner
from meshctl.xds.snapshot import Snapshot
from meshctl.xds.status import NodeInfo, ProxyStatusRegistry, StreamKind

log = logging.getLogger("meshctl.xds")

Req = TypeVar("Req")


class StreamContext:
    """What a variant needs while deciding: the node, status, and the hooks to call afterwards."""

    def __init__(self, node: NodeInfo, status: ProxyStatusRegistry):
        self.node = node
        self.status = status
        self.hooks: list[tuple[str, tuple[Any, ...]]] = []  # run after the request is applied
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

    def acked(self, type_url: str, version: str) -> None:
        self.status.record_ack(self.node.id, type_url, version)
        self.hooks.append(("on_ack", (self.node.id, type_url, version)))

    def resumed(self, type_url: str, version: str) -> None:
        """A reconnecting proxy already holds ``version``: as good as an ACK, nothing sent."""
        self.status.record_resumed(self.node.id, type_url, version)
        self.hooks.append(("on_ack", (self.node.id, type_url, version)))

    def nacked(self, type_url: str, version: str, error: str) -> None:
        log.warning("node %s NACKed %s version %s: %s", self.node.id, r.SHORT_NAMES[type_url], version, error)
        self.status.record_nack(self.node.id, type_url, version, error)
        self.hooks.append(("on_nack", (self.node.id, type_url, version, error)))

    def sent(self, type_url: str, version: str) -> None:
        self.status.record_sent(self.node.id, type_url, version)


class AdsStream(ABC, Generic[Req]):
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
        self._inbox: collections.deque[Req] = collections.deque()  # read ahead before we are ready
        self._ready = False
        self._wake = asyncio.Event()
        self._done = False
        self._abort: tuple[grpc.StatusCode, str] | None = None
        self._pushing = False  # a push is writing: others leave their turn to it (see _push)
        self._again = False
        self.finished = asyncio.Event()

    # -- variant hooks -------------------------------------------------------------------------
    @abstractmethod
    def setup(self, ctx: StreamContext) -> None: ...

    @abstractmethod
    def handle(self, request: Req) -> None: ...

    @abstractmethod
    def next_response(self) -> bytes | None: ...

    # -- shared loop ---------------------------------------------------------------------------
    def close(self) -> None:
        """End the stream cleanly (status OK) at the next turn: used on server shutdown."""
        self._done = True
        self._wake.set()

    async def run(self, context: grpc.aio.ServicerContext) -> None:
        try:
            await self._run(context)
        finally:
            self.finished.set()

    async def _run(self, context: grpc.aio.ServicerContext) -> None:
        try:
            first: Any = await context.read()
        except DecodeError:
            log.warning("rejecting %s stream: undecodable first request", self.kind)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
        if first is grpc.aio.EOF:
            return
        if not first.HasField("node") or not first.node.id:
            log.warning("rejecting %s stream: first request has no node id", self.kind)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first request must carry node.id")
        node = NodeInfo.from_proto(first.node)
        self.ctx = ctx = StreamContext(node, self.status)
        self.setup(ctx)
        token = self.status.open(node, self.kind)
        log.info("node %s (%s) opened %s ADS stream", node.id, node.cluster, self.kind)
        self._inbox.append(first)
        reader = asyncio.create_task(self._read(context))
        listening = False
        try:
            await self.callbacks.call("on_stream_open", node, wait_s=self.snapshot_wait_s)
            if self.cache.get_snapshot(node.id) is None:
                try:
                    await asyncio.wait_for(self.cache.wait_for_change(node.id, None), self.snapshot_wait_s)
                except TimeoutError:
                    log.warning(
                        "node %s: no snapshot after %.1fs; waiting for one", node.id, self.snapshot_wait_s
                    )
            self.cache.add_listener(node.id, self._wake)
            listening = True
            self.snapshot = self.cache.get_snapshot(node.id)
            # Requests that arrived together are applied together, then answered in push order.
            while self._inbox:
                if not await self._apply(self._inbox.popleft()):
                    break
            self._ready = True
            await self._push(context)
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._abort is not None:
                    await context.abort(*self._abort)
                if self._done:
                    return
                await self._push(context)
        finally:
            reader.cancel()
            if listening:
                self.cache.remove_listener(node.id, self._wake)
            self.status.close(node.id, token)
            log.info("node %s closed %s ADS stream", node.id, self.kind)
            self.callbacks.fire("on_stream_closed", node.id)

    async def _read(self, context: grpc.aio.ServicerContext) -> None:
        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                if not self._ready:
                    self._inbox.append(request)
                elif not await self._apply(request):
                    return
                else:
                    await self._push(context)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            log.debug("node %s: ADS stream read ended: %s", self.ctx.node.id, exc.code())
        except DecodeError:
            log.warning("node %s: undecodable request; closing the stream", self.ctx.node.id)
            self._abort = (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
        except Exception:
            # A bug here must end this stream only, visibly.
            log.exception("node %s: ADS %s stream failed", self.ctx.node.id, self.kind)
            self._abort = (grpc.StatusCode.INTERNAL, "internal error in xDS server")
        finally:
            self._done = True
            self._wake.set()

    async def _apply(self, request: Any) -> bool:
        """Apply one request and run the hooks it triggered; False once the stream must end."""
        node_id = self.ctx.node.id
        if request.HasField("node") and request.node.id and request.node.id != node_id:
            log.warning("node %s: stream sent a different node id %r; closing", node_id, request.node.id)
            self._abort = (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"node id changed mid-stream from {node_id!r} to {request.node.id!r}",
            )
            self._wake.set()
            return False
        self.handle(request)
        hooks = self.ctx.hooks
        if hooks:
            self.ctx.hooks = []
            for name, args in hooks:
                pending = self.callbacks.start(name, *args)
                if pending is not None:
                    await pending
        return True

    async def _push(self, context: grpc.aio.ServicerContext) -> None:
        if self._pushing:
            # The push in progress decides again once its write is done (state is only changed
            # on this loop, so it sees whatever changed), then fetches the newest snapshot.
            self._again = True
            return
        self._pushing = True
        try:
            again = True
            while again:
                self._again = False
                # Only the newest snapshot matters: changes since the last push collapse into one.
                self.snapshot = self.cache.get_snapshot(self.ctx.node.id)
                if self.snapshot is None:
                    return
                while self._abort is None and (response := self.next_response()) is not None:
                    await context.write(response)
                again = self._again
        finally:
            self._pushing = False
