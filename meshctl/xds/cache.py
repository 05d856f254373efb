"""Snapshot cache keyed by node id. No gRPC here: the server asks the cache, never the reverse.

``set_snapshot`` may be called from the event loop or from another thread (e.g. a sync API handler
running in a worker thread); waiters are woken on their own loop either way.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from meshctl.xds.snapshot import Snapshot

log = logging.getLogger("meshctl.xds")


class _Waiters:
    """One wake-up signal per node; replaced on every change so it is a one-shot broadcast."""

    __slots__ = ("event", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.event = asyncio.Event()

    def fire(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.event.set)


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._waiters: dict[str, _Waiters] = {}
        self._lock = threading.Lock()

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> None:
        """Store ``snapshot`` for ``node_id`` and wake its streams.

        Raises InconsistentSnapshot (and keeps the previous snapshot) if the snapshot references
        resources it does not contain.
        """
        snapshot.consistent()
        with self._lock:
            self._snapshots[node_id] = snapshot
            waiters = self._waiters.pop(node_id, None)
        if waiters is not None:
            waiters.fire()

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def clear(self, node_id: str) -> None:
        """Forget a node's snapshot. Connected proxies keep their last config (nothing is sent)."""
        with self._lock:
            self._snapshots.pop(node_id, None)
            waiters = self._waiters.pop(node_id, None)
        if waiters is not None:
            waiters.fire()

    def node_ids(self) -> list[str]:
        return sorted(self._snapshots)

    async def wait_for_change(self, node_id: str, after: Snapshot | None) -> Snapshot | None:
        """Return the node's current snapshot as soon as it is not ``after`` (identity, not equality).

        Returns None if the snapshot was cleared. Many rapid changes collapse into one wake-up
        that sees the newest snapshot.
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                current = self._snapshots.get(node_id)
                if current is not after:
                    return current
                waiters = self._waiters.get(node_id)
                if waiters is None or waiters.loop is not loop:
                    if waiters is not None:
                        # Waiters from another loop (tests run one loop per test) still get woken.
                        waiters.fire()
                    waiters = self._waiters[node_id] = _Waiters(loop)
            await waiters.event.wait()
