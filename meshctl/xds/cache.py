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


def _wake(waiters: dict[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, event in waiters.items():
        if loop is running:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        # One-shot wake-up per node (and per event loop), replaced after every change.
        self._waiters: dict[str, dict[asyncio.AbstractEventLoop, asyncio.Event]] = {}
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
        if waiters:
            _wake(waiters)

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def clear(self, node_id: str) -> None:
        """Forget a node's snapshot. Connected proxies keep their last config (nothing is sent)."""
        with self._lock:
            self._snapshots.pop(node_id, None)
            waiters = self._waiters.pop(node_id, None)
        if waiters:
            _wake(waiters)

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
                event = self._waiters.setdefault(node_id, {}).setdefault(loop, asyncio.Event())
            await event.wait()
