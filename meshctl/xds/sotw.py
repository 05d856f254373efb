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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from meshctl.xds import mbb
from meshctl.xds import resources as r
from meshctl.xds.resources import Entry
from meshctl.xds.snapshot import Snapshot
from meshctl.xds.stream import AdsStream, StreamContext

log = logging.getLogger("meshctl.xds")

# What a response carries: its resources, version, and (for named subscriptions) which names.
Target = tuple[Mapping[str, Entry], str, frozenset[str] | None]
_NO_KEPT: dict[str, Entry] = {}  # shared and never mutated
_NO_NAMES: frozenset[str] = frozenset()


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
    sent_names: frozenset[str] | None = None
    sent: Mapping[str, Entry] = field(default_factory=dict)
    acked_version: str | None = None
    acked: Mapping[str, Entry] = field(default_factory=dict)
    # (version, names) the proxy rejected: the same content is never resent, but a changed
    # subscription at the same type version is new content and goes out.
    nacked: set[tuple[str, frozenset[str] | None]] = field(default_factory=set)
    # Last target computed without kept resources, valid while snapshot and subscription are the same.
    memo: tuple[Snapshot, frozenset[str], bool, Target] | None = None
    # (type version, names, wildcard, sent_names) for which the target, with nothing kept, equals what
    # was sent. A new snapshot that leaves this type alone is then skipped without building a target.
    settled: tuple[str, frozenset[str], bool, frozenset[str] | None] | None = None

    def is_settled(self, version: str) -> bool:
        s = self.settled
        return (
            s is not None
            and s[0] == version == self.sent_version
            and s[1] is self.names
            and s[2] == self.wildcard
            and s[3] is self.sent_names
        )

    def subscribe(self, type_url: str, resource_names: Iterable[str]) -> None:
        names = frozenset(resource_names)
        if names:
            self.explicit = True
        if not self.explicit:
            # Legacy: a client that never named anything wants everything (LDS/CDS only).
            wildcard, subscribed = type_url in r.WILDCARD_TYPES, _NO_NAMES
        elif "*" in names:
            wildcard, subscribed = True, names - {"*"}
        else:
            wildcard, subscribed = False, names
        self.wildcard = wildcard
        if subscribed != self.names:
            self.names = subscribed

    def live(self) -> list[Entry]:
        """Every version the client may be running; both while a replacement is unanswered."""
        return [*self.acked.values(), *(e for n, e in self.sent.items() if self.acked.get(n) is not e)]

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


class SotwStream(AdsStream[discovery_pb2.DiscoveryRequest]):
    kind = "sotw"

    def setup(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.types: dict[str, SotwTypeState] = {t: SotwTypeState() for t in r.ORDER}
        self._kept_memo: tuple[tuple[object, ...], tuple[int, ...], dict[str, dict[str, Entry]]] | None = None
        # Clusters the live routes use, per (acked, sent) route mappings; and whether a snapshot
        # defines all of them (then nothing needs keeping, whatever the proxy holds).
        self._refs_memo: tuple[Mapping[str, Entry], Mapping[str, Entry], set[str]] = ({}, {}, set())
        self._covered_memo: tuple[Snapshot, set[str], bool] | None = None

    def handle(self, request: discovery_pb2.DiscoveryRequest) -> None:
        t = request.type_url
        if not self.ctx.known_type(t):
            return
        st = self.types[t]
        nonce = request.response_nonce
        if log.isEnabledFor(logging.DEBUG):
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
            return
        if nonce and nonce != st.answered_nonce:
            st.answered_nonce = nonce
            version = st.sent_version or ""
            if request.HasField("error_detail"):
                st.nacked.add((version, st.sent_names))
                self.ctx.nacked(t, version, request.error_detail.message)
            else:
                st.acked_version, st.acked = st.sent_version, st.sent
                self.ctx.acked(t, version)
        st.subscribe(t, request.resource_names)
        st.requested = st.pending = True
        if not nonce and st.sent_version is None and request.version_info:
            self._resume(t, st, request.version_info)

    def _resume(self, t: str, st: SotwTypeState, version: str) -> None:
        """A reconnecting proxy that already has the current full set of a wildcard type gets no resend.

        Only safe for wildcard LDS/CDS: for named subscriptions the client may want new names.
        """
        snap = self.cache.get_snapshot(self.ctx.node.id)
        if snap is None or t not in r.WILDCARD_TYPES or not st.wildcard or st.names:
            return
        if snap.version(t) != version:
            return
        st.sent_version = st.acked_version = version
        st.sent = st.acked = snap.entries(t)
        st.sent_names = None
        self.ctx.resumed(t, version)

    def _kept(self, snap: Snapshot, t: str, st: SotwTypeState) -> dict[str, Entry]:
        if t not in r.CLUSTER_TYPES:
            return _NO_KEPT
        rds, cds, eds = self.types[r.ROUTE], self.types[r.CLUSTER], self.types[r.ENDPOINT]
        if not rds.acked and not rds.sent:
            return _NO_KEPT  # no routes on the proxy, so nothing to keep alive
        # Sent/ACKed mappings are replaced, never mutated, so identity tells whether anything moved.
        refs_memo = self._refs_memo
        if refs_memo[0] is rds.acked and refs_memo[1] is rds.sent:
            refs = refs_memo[2]
        else:
            refs = mbb.route_refs(rds.live())
            self._refs_memo = (rds.acked, rds.sent, refs)
        covered = self._covered_memo
        if covered is None or covered[0] is not snap or covered[1] is not refs:
            covered = self._covered_memo = (snap, refs, snap.entries(r.CLUSTER).keys() >= refs)
        if covered[2]:
            return _NO_KEPT  # every cluster a live route uses is still in the snapshot
        key = (snap, rds.acked, rds.sent, cds.acked, cds.sent, eds.acked, eds.sent)
        ids = tuple(map(id, key))  # the memo holds the objects, so their ids cannot be reused meanwhile
        memo = self._kept_memo
        if memo is not None and memo[1] == ids:
            kept_all = memo[2]
        else:
            kept_all = mbb.kept_resources(snap, (cds.acked, cds.sent), (eds.acked, eds.sent), refs)
            self._kept_memo = (key, ids, kept_all)
        kept = kept_all[t]
        return {n: e for n, e in kept.items() if st.wants(n)} if kept else {}

    def _target(self, snap: Snapshot, t: str, st: SotwTypeState, kept: Mapping[str, Entry]) -> Target:
        memo = st.memo
        if (
            not kept
            and memo is not None
            and memo[0] is snap
            and memo[1] is st.names
            and memo[2] == st.wildcard
        ):
            return memo[3]
        entries = snap.entries(t)
        chosen: Mapping[str, Entry]
        if st.wildcard:
            chosen = entries  # the snapshot's own mapping: no copy, and its cached wire blob applies
        else:
            chosen = {n: entries[n] for n in sorted(st.names) if n in entries}
        if kept:
            merged, version = mbb.with_kept(snap, t, chosen, kept)
            return merged, version, None if st.wildcard else frozenset(merged)
        target: Target = (chosen, snap.version(t), None if st.wildcard else frozenset(chosen))
        st.memo = (snap, st.names, st.wildcard, target)
        return target

    def next_response(self) -> bytes | None:
        snap = self.snapshot
        if snap is None:
            return None
        clusters_settled = True
        types = self.types
        for t in r.ORDER:
            st = types[t]
            if not st.requested:
                continue
            cluster_type = t in r.CLUSTER_TYPES
            if not cluster_type and not clusters_settled:
                return None  # routes go only to a proxy whose clusters are warm (CDS/EDS ACKed)
            if not st.pending:
                clusters_settled = clusters_settled and not cluster_type
                continue  # one response per type in flight; newer snapshots wait (coalesced)
            kept = self._kept(snap, t, st) if cluster_type else _NO_KEPT
            if not kept and st.is_settled(snap.version(t)):
                continue  # this type did not change since it was sent
            entries, version, names = self._target(snap, t, st, kept)
            if (version, names) in st.nacked:
                continue  # never resend what the proxy rejected
            if version == st.sent_version and names == st.sent_names:
                if not kept:
                    st.settled = (version, st.names, st.wildcard, st.sent_names)
                continue
            response = self._respond(snap, t, st, (entries, version, names))
            if not kept:
                st.settled = (version, st.names, st.wildcard, names)
            return response
        return None

    def _respond(self, snap: Snapshot, t: str, st: SotwTypeState, target: Target) -> bytes:
        entries, version, names = target
        nonce = self.ctx.next_nonce()
        if entries is snap.entries(t):
            blob = snap.sotw_blob(t)
        else:
            blob = b"".join(e.sotw_field for e in entries.values())
        head = discovery_pb2.DiscoveryResponse(version_info=version, type_url=t, nonce=nonce)
        st.pending = False
        st.nonce = nonce
        st.sent_version, st.sent_names, st.sent = version, names, entries
        self.ctx.sent(t, version)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "node %s <- %s v%s (%d resources)", self.ctx.node.id, r.SHORT_NAMES[t], version, len(entries)
            )
        return blob + head.SerializeToString()
