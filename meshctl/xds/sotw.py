"""State-of-the-world ADS: every response carries the full set of subscribed resources of its type.

Per type the stream keeps what it last sent and what the client last ACKed. A response is only
sent when the client has a request pending for that type (it answered our previous response), so
at most one response per type is in flight and rapid snapshot changes collapse into one push of
the newest snapshot. Types go out in CDS, EDS, LDS, RDS order; listeners and routes wait until
clusters and endpoints are ACKed, so a route never reaches a proxy before the clusters it names
have warmed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from meshctl.xds import mbb
from meshctl.xds import resources as r
from meshctl.xds.resources import Entry
from meshctl.xds.snapshot import Snapshot
from meshctl.xds.stream import AdsStream, StreamContext

log = logging.getLogger("meshctl.xds")


@dataclass
class SotwTypeState:
    requested: bool = False
    explicit: bool = False  # the client has named resources at least once: legacy wildcard is over
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    pending: bool = False  # the client answered our latest response: we may send the next one
    nonce: str = ""
    answered_nonce: str = ""
    sent_version: str | None = None
    sent: dict[str, Entry] = field(default_factory=dict)
    acked_version: str | None = None
    acked: dict[str, Entry] = field(default_factory=dict)
    nacked: set[str] = field(default_factory=set)

    def subscribe(self, type_url: str, resource_names: list[str]) -> None:
        names = set(resource_names)
        if names:
            self.explicit = True
        if not self.explicit:
            # Legacy: a client that never named anything wants everything (LDS/CDS only).
            self.wildcard = type_url in r.WILDCARD_TYPES
            self.names = frozenset()
        else:
            self.wildcard = "*" in names
            self.names = frozenset(names - {"*"})

    def client_view(self) -> dict[str, Entry]:
        """Resources by name the client may hold: ACKed, or sent and not yet answered."""
        return {**self.acked, **self.sent}

    def live(self) -> list[Entry]:
        """Every version the client may be running; both while a replacement is unanswered."""
        return [*self.acked.values(), *(e for n, e in self.sent.items() if self.acked.get(n) is not e)]

    def chosen(self, snapshot: Snapshot, type_url: str) -> dict[str, Entry]:
        entries = snapshot.entries(type_url)
        if self.wildcard:
            return dict(entries)
        return {n: entries[n] for n in sorted(self.names) if n in entries}

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


class SotwStream(AdsStream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]):
    kind = "sotw"

    def setup(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.types: dict[str, SotwTypeState] = {t: SotwTypeState() for t in r.ORDER}

    async def handle(self, request: discovery_pb2.DiscoveryRequest) -> None:
        t = request.type_url
        if not self.ctx.known_type(t):
            return
        st = self.types[t]
        nonce = request.response_nonce
        log.debug(
            "node %s -> %s v%r nonce %r, %d names%s",
            self.ctx.node.id,
            r.SHORT_NAMES[t],
            request.version_info,
            nonce,
            len(request.resource_names),
            " (error)" if request.HasField("error_detail") else "",
        )
        if nonce and nonce != st.nonce:
            # Stale (superseded by a newer response) or never issued: the xDS spec says ignore it.
            log.debug("node %s: ignoring %s request with stale/unknown nonce %r", self.ctx.node.id, t, nonce)
            return
        if nonce and nonce != st.answered_nonce:
            st.answered_nonce = nonce
            version = st.sent_version or ""
            if request.HasField("error_detail"):
                st.nacked.add(version)
                await self.ctx.nacked(t, version, request.error_detail.message)
            else:
                st.acked_version, st.acked = st.sent_version, st.sent
                await self.ctx.acked(t, version)
        st.subscribe(t, list(request.resource_names))
        st.requested = st.pending = True
        if not nonce and st.sent_version is None and request.version_info:
            await self._resume(t, st, request.version_info)

    async def _resume(self, t: str, st: SotwTypeState, version: str) -> None:
        """A reconnecting proxy that already has the current full set of a wildcard type gets no resend.

        Only safe for wildcard LDS/CDS: for named subscriptions the client may want new names.
        """
        snap = self.snapshot
        if snap is None or t not in r.WILDCARD_TYPES or not st.wildcard or st.names:
            return
        if snap.version(t) != version:
            return
        st.sent_version = st.acked_version = version
        st.sent = st.acked = dict(snap.entries(t))
        self.ctx.status.record_resumed(self.ctx.node.id, t, version)
        await self.ctx.callbacks.call("on_ack", self.ctx.node.id, t, version)

    def _target(self, snap: Snapshot, t: str) -> tuple[dict[str, Entry], str]:
        st = self.types[t]
        chosen = st.chosen(snap, t)
        if t not in (r.CLUSTER, r.ENDPOINT):
            return chosen, snap.version(t)
        refs = mbb.route_refs(self.types[r.ROUTE].live())
        kept = mbb.kept_resources(
            snap, self.types[r.CLUSTER].client_view(), self.types[r.ENDPOINT].client_view(), refs
        )[t]
        return mbb.with_kept(snap, t, chosen, {n: e for n, e in kept.items() if st.wants(n)})

    def next_response(self) -> discovery_pb2.DiscoveryResponse | None:
        snap = self.snapshot
        if snap is None:
            return None
        clusters_settled = True
        for t in r.ORDER:
            st = self.types[t]
            if not st.requested:
                continue
            if t not in r.CLUSTER_TYPES and not clusters_settled:
                return None  # routes go only to a proxy whose clusters are warm (CDS/EDS ACKed)
            if not st.pending:
                clusters_settled = clusters_settled and t not in r.CLUSTER_TYPES
                continue  # one response per type in flight; newer snapshots wait (coalesced)
            entries, version = self._target(snap, t)
            if version in st.nacked:
                continue  # never resend a version the proxy rejected
            if version == st.sent_version and entries.keys() == st.sent.keys():
                continue
            return self._respond(t, st, entries, version)
        return None

    def _respond(
        self, t: str, st: SotwTypeState, entries: dict[str, Entry], version: str
    ) -> discovery_pb2.DiscoveryResponse:
        nonce = self.ctx.next_nonce()
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=t,
            nonce=nonce,
            resources=[entries[n].packed for n in sorted(entries)],
        )
        st.pending = False
        st.nonce = nonce
        st.sent_version = version
        st.sent = entries
        self.ctx.sent(t, version)
        log.debug(
            "node %s <- %s v%s (%d resources)", self.ctx.node.id, r.SHORT_NAMES[t], version, len(entries)
        )
        return response
