"""Snapshot cache keyed by node id. No gRPC here: the server asks the cache, never the reverse.

``set_snapshot`` may be called from the event loop or from another thread (e.g. a sync API handler
running in a worker thread); listeners are woken on their own loop either way.
"""

from __future__ import annotations

import asyncio
import threading

from meshctl.xds.snapshot import Snapshot

Listeners = dict[asyncio.Event, asyncio.AbstractEventLoop]


def _wake(listeners: Listeners) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for event, loop in listeners.items():
        if loop is running:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._listeners: dict[str, Listeners] = {}
        self._lock = threading.Lock()

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> None:
        """Store ``snapshot`` for ``node_id`` and wake its streams.

        Raises InconsistentSnapshot (and keeps the previous snapshot) if the snapshot references
        resources it does not contain.
        """
        snapshot.consistent()
        with self._lock:
            self._snapshots[node_id] = snapshot
            listeners = self._listeners.get(node_id)
            listeners = dict(listeners) if listeners else None
        if listeners:
            _wake(listeners)

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def clear(self, node_id: str) -> None:
        """Forget a node's snapshot. Connected proxies keep their last config (nothing is sent)."""
        with self._lock:
            self._snapshots.pop(node_id, None)
            listeners = self._listeners.get(node_id)
            listeners = dict(listeners) if listeners else None
        if listeners:
            _wake(listeners)

    def node_ids(self) -> list[str]:
        return sorted(self._snapshots)

    def add_listener(self, node_id: str, event: asyncio.Event) -> None:
        """Set ``event`` (on the calling loop) whenever the node's snapshot is set or cleared.

        The streaming server uses this instead of ``wait_for_change`` so that a push wakes the
        stream directly, without a watcher task per stream.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            self._listeners.setdefault(node_id, {})[event] = loop

    def remove_listener(self, node_id: str, event: asyncio.Event) -> None:
        with self._lock:
            listeners = self._listeners.get(node_id)
            if listeners is not None:
                listeners.pop(event, None)
                if not listeners:
                    del self._listeners[node_id]

    async def wait_for_change(self, node_id: str, after: Snapshot | None) -> Snapshot | None:
        """Return the node's current snapshot as soon as it is not ``after`` (identity, not equality).

        Returns None if the snapshot was cleared. Many rapid changes collapse into one wake-up
        that sees the newest snapshot.
        """
        current = self._snapshots.get(node_id)
        if current is not after:
            return current
        event = asyncio.Event()
        self.add_listener(node_id, event)
        try:
            while (current := self._snapshots.get(node_id)) is after:
                await event.wait()
                event.clear()
            return current
        finally:
            self.remove_listener(node_id, event)
