"""Incremental (delta) ADS: only changed resources go out, vanished ones in ``removed_resources``.

Per type the stream tracks which resource versions the client holds. That view is updated when a
response is sent and rolled back if the client NACKs it (a rejected delta is not applied). The
same ordering and one-in-flight-per-type rules as the SotW stream apply, including keeping a
removed cluster until the routes that used it are ACKed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
_NO_KEPT: dict[str, Entry] = {}  # shared and never mutated


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
    # (version, subscription epoch) the proxy rejected: not resent, but a changed subscription
    # (new epoch) at the same version is answered.
    nacked: set[tuple[str, int]] = field(default_factory=set)
    # (target version, subscription epoch) the client was last brought level with: skip the O(n)
    # diff while neither changed.
    epoch: int = 0
    level: tuple[str, int] | None = None
    # The snapshot whose whole type the client holds exactly (at `epoch`), for O(changes) diffs.
    level_snapshot: tuple[Snapshot, int] | None = None
    rev: int = 0  # bumped whenever has/known/before may have changed (memo key)

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
        self.level = None
        self.level_snapshot = None

    def live(self) -> list[Entry]:
        """Resources the client may be running: what it holds, plus what an in-flight response replaces
        (the old version stays live until the client ACKs the new one)."""
        live = list(self.known.values())
        live += [prior[1] for prior in self.before.values() if prior is not None and prior[1] is not None]
        return live


class DeltaStream(AdsStream[discovery_pb2.DeltaDiscoveryRequest]):
    kind = "delta"

    def setup(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.types: dict[str, DeltaTypeState] = {t: DeltaTypeState() for t in r.ORDER}
        self._kept_memo: tuple[tuple[Snapshot, int, int, int], dict[str, dict[str, Entry]]] | None = None
        # Clusters the live routes use (per route-state revision), and whether a snapshot defines
        # all of them: then nothing needs keeping, whatever the proxy holds.
        self._refs_memo: tuple[int, set[str]] = (-1, set())
        self._covered_memo: tuple[Snapshot, set[str], bool] | None = None

    def handle(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        t = request.type_url
        if not self.ctx.known_type(t):
            return
        st = self.types[t]
        nonce = request.response_nonce
        if log.isEnabledFor(logging.DEBUG):
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
                st.nacked.add((version, st.epoch))
                self.ctx.nacked(t, version, request.error_detail.message)
            else:
                st.before = {}
                st.acked_version = version
                self.ctx.acked(t, version)
        # A stale nonce is not an ACK, but the spec says subscription changes must still be honoured.
        self._subscribe(t, st, request)
        st.rev += 1

    def _subscribe(self, t: str, st: DeltaTypeState, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        initial: set[str] = set()
        if not st.requested:
            st.requested = True
            st.epoch += 1
            if not subscribe and not unsubscribe and t in r.WILDCARD_TYPES:
                st.wildcard = True  # legacy wildcard; stays until "*" is unsubscribed
            snap_entries = self.snapshot.entries(t) if self.snapshot is not None else {}
            for name, digest in request.initial_resource_versions.items():
                st.has[name] = digest
                entry = snap_entries.get(name)
                if entry is not None and entry.hash == digest:
                    st.known[name] = entry
                initial.add(name)
        if subscribe or unsubscribe:
            st.epoch += 1
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

    def _kept(self, snap: Snapshot, t: str, st: DeltaTypeState) -> dict[str, Entry]:
        """Removed resources of type ``t`` the client holds and must keep for now (make-before-break)."""
        if t not in r.CLUSTER_TYPES:
            return _NO_KEPT
        rds, cds, eds = self.types[r.ROUTE], self.types[r.CLUSTER], self.types[r.ENDPOINT]
        if not rds.known and not rds.before:
            return _NO_KEPT  # no routes on the proxy, so nothing to keep alive
        refs_memo = self._refs_memo
        if refs_memo[0] == rds.rev:
            refs = refs_memo[1]
        else:
            refs = mbb.route_refs(rds.live())
            self._refs_memo = (rds.rev, refs)
        covered = self._covered_memo
        if covered is None or covered[0] is not snap or covered[1] is not refs:
            covered = self._covered_memo = (snap, refs, snap.entries(r.CLUSTER).keys() >= refs)
        if covered[2]:
            return _NO_KEPT  # every cluster a live route uses is still in the snapshot
        key = (snap, rds.rev, cds.rev, eds.rev)
        if (
            self._kept_memo is not None
            and self._kept_memo[0][0] is snap
            and self._kept_memo[0][1:] == key[1:]
        ):
            kept_all = self._kept_memo[1]
        else:
            kept_all = mbb.kept_resources(snap, (cds.known,), (eds.known,), refs)
            self._kept_memo = (key, kept_all)
        return {n: e for n, e in kept_all[t].items() if st.wants(n) and n in st.has}

    @staticmethod
    def _chosen(snap: Snapshot, t: str, st: DeltaTypeState) -> Mapping[str, Entry]:
        """The snapshot's resources of type ``t`` the client subscribes to."""
        entries = snap.entries(t)
        if st.wildcard:
            return entries
        return {n: entries[n] for n in st.names if n in entries}

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
            if st.in_flight:
                clusters_settled = clusters_settled and not cluster_type
                continue
            kept = self._kept(snap, t, st) if cluster_type else _NO_KEPT
            target: Mapping[str, Entry]
            if kept:
                target, version = mbb.with_kept(snap, t, self._chosen(snap, t, st), kept)
            else:
                # Without kept resources the target's version is the snapshot's: decide before
                # building the target, so an unchanged type costs O(1).
                version = snap.version(t)
            if (version, st.epoch) in st.nacked or (not st.force and st.level == (version, st.epoch)):
                continue
            if not kept:
                target = self._chosen(snap, t, st)
            changed, removed = self._diff(snap, t, st, target)
            # After this pass the client holds exactly `target`; remember it if it is a whole type.
            leveled = (snap, st.epoch) if target is snap.entries(t) else None
            # The first response of a stream goes out even if empty: it ends the client's initial
            # fetch (Envoy would otherwise wait 15 s) and tells a reconnected client it is current.
            if changed or removed or st.sent_version is None:
                response = self._respond(t, st, changed, sorted(removed), version)
                st.level_snapshot = leveled
                return response
            st.force.clear()
            if st.acked_version != version:
                # The client already holds exactly this version (e.g. it unsubscribed from what
                # was removed): nothing to send, but it is in sync, as status must say.
                st.acked_version = st.sent_version = version
                self.ctx.resumed(t, version)
            st.level = (version, st.epoch)
            st.level_snapshot = leveled
        return None

    @staticmethod
    def _diff(
        snap: Snapshot, t: str, st: DeltaTypeState, target: Mapping[str, Entry]
    ) -> tuple[list[Entry], list[str]]:
        """What to send and what to remove so the client holds exactly ``target``.

        Runs on every push. When the client holds exactly an earlier snapshot's whole type, big
        types are diffed bucket by bucket in O(changes); otherwise on plain name->hash dicts.
        """
        has, force = st.has, st.force
        whole = target is snap.entries(t)
        level = st.level_snapshot
        if whole and not force and level is not None and level[1] == st.epoch:
            quick = snap.changes_since(level[0], t)
            if quick is not None:
                return [target[n] for n in quick[0]], quick[1]
        hashes = snap.resource_versions(t) if whole else {n: e.hash for n, e in target.items()}
        get = has.get
        names = [n for n, h in hashes.items() if get(n) != h]
        added = sum(1 for n in names if n not in has)
        if force:
            names += [n for n in force if n in hashes and get(n) == hashes[n]]
        # Names held but no longer targeted exist iff `has` is bigger than its overlap with the target.
        removed = [n for n in has if n not in hashes] if len(has) - (len(hashes) - added) > 0 else []
        if force:
            removed += [n for n in force if n not in hashes and n not in has]
        return [target[n] for n in names], removed

    def _respond(
        self, t: str, st: DeltaTypeState, changed: list[Entry], removed: list[str], version: str
    ) -> bytes:
        nonce = self.ctx.next_nonce()
        head = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version, type_url=t, nonce=nonce, removed_resources=removed
        )
        st.before = {}
        for e in changed:
            st.before[e.name] = (st.has[e.name], st.known.get(e.name)) if e.name in st.has else None
            st.has[e.name] = e.hash
            st.known[e.name] = e
        for name in removed:
            st.before[name] = (st.has[name], st.known.get(name)) if name in st.has else None
            st.drop(name)
        st.force.clear()
        st.rev += 1
        st.in_flight = True
        st.nonce = nonce
        st.sent_version = version
        st.level = (version, st.epoch)
        self.ctx.sent(t, version)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "node %s <- delta %s v%s (+%d -%d)",
                self.ctx.node.id,
                r.SHORT_NAMES[t],
                version,
                len(changed),
                len(removed),
            )
        return b"".join(e.delta_field for e in changed) + head.SerializeToString()
