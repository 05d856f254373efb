"""Keeps every connected proxy's snapshot equal to the translation of the contracts it needs.

This is the seam between the protocol layer (meshctl.xds: knows nodes, snapshots, ACKs) and the
domain (contracts, providers): it listens to the xDS server's callbacks, translates per node with
the pure functions of meshctl.translate, sets snapshots in the cache, and lets callers wait until
the proxies of a service have ACKed what was set (`?wait=acked`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from meshctl.errors import InconsistentSnapshot
from meshctl.model import Contract, Provider
from meshctl.translate.memo import TranslationMemo
from meshctl.translate.node import DEFAULT_LISTENER_PORT, NodeView, translate_node
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.snapshot import Snapshot
from meshctl.xds.status import NodeInfo, ProxyStatusRegistry

log = logging.getLogger(__name__)


def node_view(info: NodeInfo) -> NodeView:
    """Translate-side view of a node from what it announced; unreadable metadata falls back to defaults."""
    md = info.metadata or {}
    try:
        port = int(md.get("listener_port", DEFAULT_LISTENER_PORT))
    except (TypeError, ValueError):
        port = DEFAULT_LISTENER_PORT
    proxyless = md.get("proxyless") in (True, "true", "1", 1)
    return NodeView(
        node_id=info.id,
        service=info.cluster,
        zone=info.zone,
        region=info.region,
        listener_port=port if 0 < port < 65536 else DEFAULT_LISTENER_PORT,
        proxyless=proxyless,
    )


@dataclass(frozen=True)
class PushResult:
    node_id: str
    versions: dict[str, str]
    changed: bool


class ConfigSync:
    """Translates and sets snapshots for connected nodes; wakes `wait_acked` callers on ACK/NACK."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: ProxyStatusRegistry,
        contracts: Callable[[], Sequence[Contract]],
        providers: Callable[[], Mapping[str, Provider]],
        on_nack: Callable[[str, str, str, str], None] | None = None,
        on_node: Callable[[NodeView], None] | None = None,
    ) -> None:
        self.cache = cache
        self.status = status
        self._contracts = contracts
        self._providers = providers
        self._nodes: dict[str, NodeView] = {}
        self._on_nack = on_nack
        self._on_node = on_node
        self._acked = asyncio.Condition()
        self.push_latencies_s: list[float] = []
        self._set_at: dict[str, float] = {}
        self.memo = TranslationMemo()
        # How long a disconnected node's snapshot is kept for its return (as long as the status
        # registry lists it).
        self.retain_s = status.retention_s
        self._forget: dict[str, asyncio.TimerHandle] = {}
        self._streams: dict[str, int] = {}  # open streams per node id (a reconnect may overlap)

    # -- xDS server callbacks --------------------------------------------------------------------
    def on_stream_open(self, node: NodeInfo) -> None:
        self._streams[node.id] = self._streams.get(node.id, 0) + 1
        forget = self._forget.pop(node.id, None)
        if forget is not None:
            forget.cancel()
        view = node_view(node)
        self._nodes[node.id] = view
        if self._on_node is not None:
            self._on_node(view)
        self.push_node(view)

    def on_stream_closed(self, node_id: str) -> None:
        # Keep the snapshot for a while: a reconnecting proxy gets the same versions and sees no
        # churn. Then forget it, or every pod name a rollout ever used would hold a snapshot.
        left = self._streams.get(node_id, 1) - 1
        if left > 0:
            # A stale stream of a node that already reconnected: the new stream is still served.
            self._streams[node_id] = left
            return
        self._streams.pop(node_id, None)
        self._nodes.pop(node_id, None)
        self._set_at.pop(node_id, None)
        old = self._forget.pop(node_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._forget[node_id] = loop.call_later(self.retain_s, self._drop, node_id)

    def _drop(self, node_id: str) -> None:
        self._forget.pop(node_id, None)
        if node_id not in self._nodes:
            self.cache.clear(node_id)

    async def on_ack(self, node_id: str, type_url: str, version: str) -> None:
        started = self._set_at.pop(node_id, None)
        if started is not None:
            self.push_latencies_s.append(time.perf_counter() - started)
            del self.push_latencies_s[:-1000]
        async with self._acked:
            self._acked.notify_all()

    async def on_nack(self, node_id: str, type_url: str, version: str, error: str) -> None:
        if self._on_nack is not None:
            self._on_nack(node_id, type_url, version, error)
        async with self._acked:
            self._acked.notify_all()

    # -- pushing -----------------------------------------------------------------------------------
    def nodes(self) -> list[NodeView]:
        return list(self._nodes.values())

    def nodes_of(self, services: Iterable[str]) -> list[NodeView]:
        wanted = set(services)
        return [n for n in self._nodes.values() if n.service in wanted]

    def push_node(self, node: NodeView) -> PushResult:
        resources = translate_node(node, self._contracts(), self._providers(), self.memo)
        snap = Snapshot.build(resources)
        old = self.cache.get_snapshot(node.node_id)
        if old is not None and old.versions() == snap.versions():
            return PushResult(node.node_id, snap.versions(), False)
        try:
            self.cache.set_snapshot(node.node_id, snap)
        except InconsistentSnapshot:
            # Translation is meant to be consistent by construction; keep the last good config.
            log.exception("inconsistent snapshot for %s kept back", node.node_id)
            return PushResult(node.node_id, old.versions() if old else {}, False)
        self._set_at[node.node_id] = time.perf_counter()
        return PushResult(node.node_id, snap.versions(), True)

    def push_services(self, services: Iterable[str]) -> list[PushResult]:
        return [self.push_node(n) for n in self.nodes_of(services)]

    def push_all(self) -> list[PushResult]:
        return [self.push_node(n) for n in list(self._nodes.values())]

    def acked(self, result: PushResult) -> bool:
        st = self.status.get(result.node_id)
        if st is None or not st.connected:
            return True  # nobody to wait for: a gone proxy gets the snapshot when it returns
        for type_url, version in result.versions.items():
            ts = st.types.get(type_url)
            if ts is None or ts.version_acked != version:
                if ts is not None and ts.last_nack is not None and ts.last_nack.version == version:
                    return True  # NACKed: settled (it is reported on the contract), not pending
                return False
        return True

    async def wait_acked(self, results: Sequence[PushResult], timeout_s: float) -> bool:
        """True when every node in `results` has ACKed (or NACKed) what was set for it."""
        deadline = time.monotonic() + timeout_s
        async with self._acked:
            while not all(self.acked(r) for r in results):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._acked.wait(), left)
                except TimeoutError:
                    return all(self.acked(r) for r in results)
        return True
