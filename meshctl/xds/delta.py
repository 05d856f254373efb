"""Incremental (delta) ADS: only changed resources go out, vanished ones in ``removed_resources``.

Per type the stream tracks which resource versions the client holds. That view is updated when a
response is sent and rolled back if the client NACKs it (a rejected delta is not applied). The
same ordering and one-in-flight-per-type rules as the SotW stream apply, including keeping a
removed cluster until the routes that used it are ACKed.
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


# What the client held before a response: (hash, entry) or None when it did not have the name.
Prior = tuple[str, Entry | None] | None


@dataclass
class DeltaTypeState:
    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    has: dict[str, str] = field(default_factory=dict)  # name -> hash the client holds
    known: dict[str, Entry] = field(default_factory=dict)  # contents of `has`, where we know them
    force: set[str] = field(default_factory=set)  # must be (re)sent or reported absent regardless of `has`
    in_flight: bool = False
    nonce: str = ""
    sent_version: str | None = None
    before: dict[str, Prior] = field(default_factory=dict)  # rollback for the in-flight response
    acked_version: str | None = None
    nacked: set[str] = field(default_factory=set)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def drop(self, name: str) -> None:
        self.has.pop(name, None)
        self.known.pop(name, None)

    def rollback(self) -> None:
        for name, prior in self.before.items():
            if prior is None:
                self.drop(name)
                continue
            digest, entry = prior
            self.has[name] = digest
            if entry is None:
                self.known.pop(name, None)
            else:
                self.known[name] = entry
        self.before = {}

    def live(self) -> list[Entry]:
        """Resources the client may be running: what it holds, plus what an in-flight response replaces
        (the old version stays live until the client ACKs the new one)."""
        live = list(self.known.values())
        live += [prior[1] for prior in self.before.values() if prior is not None and prior[1] is not None]
        return live


class DeltaStream(AdsStream[discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse]):
    kind = "delta"

    def setup(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.types: dict[str, DeltaTypeState] = {t: DeltaTypeState() for t in r.ORDER}

    async def handle(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        t = request.type_url
        if not self.ctx.known_type(t):
            return
        st = self.types[t]
        nonce = request.response_nonce
        log.debug(
            "node %s -> delta %s nonce %r, +%d -%d names, %d initial%s",
            self.ctx.node.id,
            r.SHORT_NAMES[t],
            nonce,
            len(request.resource_names_subscribe),
            len(request.resource_names_unsubscribe),
            len(request.initial_resource_versions),
            " (error)" if request.HasField("error_detail") else "",
        )
        if nonce and st.in_flight and nonce == st.nonce:
            st.in_flight = False
            version = st.sent_version or ""
            if request.HasField("error_detail"):
                st.rollback()
                st.nacked.add(version)
                await self.ctx.nacked(t, version, request.error_detail.message)
            else:
                st.before = {}
                st.acked_version = version
                await self.ctx.acked(t, version)
        elif nonce:
            # Stale nonce: not an ACK, but the spec says subscription changes must still be honoured.
            log.debug("node %s: %s request with stale/unknown nonce %r", self.ctx.node.id, t, nonce)
        self._subscribe(t, st, request)

    def _subscribe(self, t: str, st: DeltaTypeState, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        initial: set[str] = set()
        if not st.requested:
            st.requested = True
            if not subscribe and not unsubscribe and t in r.WILDCARD_TYPES:
                st.wildcard = True  # legacy wildcard; stays until "*" is unsubscribed
            snap_entries = self.snapshot.entries(t) if self.snapshot is not None else {}
            for name, digest in request.initial_resource_versions.items():
                st.has[name] = digest
                entry = snap_entries.get(name)
                if entry is not None and entry.hash == digest:
                    st.known[name] = entry
                initial.add(name)
        for name in subscribe:
            if name == "*":
                st.wildcard = True
                continue
            st.names.add(name)
            if name not in initial:
                # The client may have forgotten a resource it still looks subscribed to: resend.
                st.force.add(name)
        for name in unsubscribe:
            if name == "*":
                st.wildcard = False
                for held in [n for n in st.has if n not in st.names]:
                    st.drop(held)
                continue
            st.names.discard(name)
            if st.wildcard:
                # The client cannot tell whether the wildcard still covers it: say so either way.
                st.force.add(name)
            else:
                st.force.discard(name)
                st.drop(name)

    def _target(self, snap: Snapshot, t: str) -> tuple[dict[str, Entry], str]:
        st = self.types[t]
        entries = snap.entries(t)
        if st.wildcard:
            chosen = dict(entries)
        else:
            chosen = {n: entries[n] for n in st.names if n in entries}
        if t not in (r.CLUSTER, r.ENDPOINT):
            return chosen, snap.version(t)
        refs = mbb.route_refs(self.types[r.ROUTE].live())
        kept = mbb.kept_resources(snap, self.types[r.CLUSTER].known, self.types[r.ENDPOINT].known, refs)[t]
        return mbb.with_kept(snap, t, chosen, {n: e for n, e in kept.items() if st.wants(n) and n in st.has})

    def next_response(self) -> discovery_pb2.DeltaDiscoveryResponse | None:
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
            if st.in_flight:
                clusters_settled = clusters_settled and t not in r.CLUSTER_TYPES
                continue
            target, version = self._target(snap, t)
            if version in st.nacked:
                continue
            changed = [e for n, e in sorted(target.items()) if n in st.force or st.has.get(n) != e.hash]
            removed = sorted(
                {n for n in st.has if n not in target} | {n for n in st.force if n not in target}
            )
            # The first response of a stream goes out even if empty: it ends the client's initial
            # fetch (Envoy would otherwise wait 15 s) and tells a reconnected client it is current.
            if changed or removed or st.sent_version is None:
                return self._respond(t, st, changed, removed, version)
            st.force.clear()
        return None

    def _respond(
        self, t: str, st: DeltaTypeState, changed: list[Entry], removed: list[str], version: str
    ) -> discovery_pb2.DeltaDiscoveryResponse:
        nonce = self.ctx.next_nonce()
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version, type_url=t, nonce=nonce, removed_resources=removed
        )
        for e in changed:
            response.resources.add(name=e.name, version=e.hash, resource=e.packed)
        st.before = {}
        for e in changed:
            st.before[e.name] = (st.has[e.name], st.known.get(e.name)) if e.name in st.has else None
            st.has[e.name] = e.hash
            st.known[e.name] = e
        for name in removed:
            st.before[name] = (st.has[name], st.known.get(name)) if name in st.has else None
            st.drop(name)
        st.force.difference_update(st.before)
        st.in_flight = True
        st.nonce = nonce
        st.sent_version = version
        self.ctx.sent(t, version)
        log.debug(
            "node %s <- delta %s v%s (+%d -%d)",
            self.ctx.node.id,
            r.SHORT_NAMES[t],
            version,
            len(changed),
            len(removed),
        )
        return response
