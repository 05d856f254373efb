"""Immutable per-node configuration snapshots (the unit the cache stores and the server sends).

Versions are content hashes, never counters: a restarted control plane that computes the same
configuration sends the same versions, and proxies see no change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from meshctl.errors import InconsistentSnapshot
from meshctl.xds import resources as r
from meshctl.xds.resources import Entry

_EMPTY: Mapping[str, Entry] = MappingProxyType({})
_EMPTY_VERSION = r.version_of(())
# Types at least this big are also hashed in buckets, so that a delta stream can find the few
# changed resources among thousands without comparing them all on every push.
_BUCKETED = 512


class _Buckets:
    """A type's name->hash map split into buckets, each with its own version."""

    __slots__ = ("maps", "mask", "versions")

    def __init__(self, hashes: Mapping[str, str]):
        count = 1 << max(4, (len(hashes) // 32).bit_length())  # ~16-32 resources per bucket
        self.mask = count - 1
        self.maps: list[dict[str, str]] = [{} for _ in range(count)]
        for name, digest in hashes.items():
            # hash() is randomised per process, which is fine: buckets never leave the process.
            self.maps[hash(name) & self.mask][name] = digest
        self.versions = [r.version_of(m.items()) for m in self.maps]

    def diff(self, old: _Buckets) -> tuple[list[str], list[str]] | None:
        """(changed or added names, removed names) going from ``old`` to self; None if incomparable."""
        if old.mask != self.mask:
            return None
        changed: list[str] = []
        removed: list[str] = []
        for i, version in enumerate(self.versions):
            if version == old.versions[i]:
                continue
            new_map, old_map = self.maps[i], old.maps[i]
            get = old_map.get
            changed += [n for n, h in new_map.items() if get(n) != h]
            removed += [n for n in old_map if n not in new_map]
        return changed, removed


class Snapshot:
    """All resources one node should have, grouped by type URL, with per-type versions."""

    __slots__ = ("_blobs", "_buckets", "_entries", "_hashes", "_missing", "_versions")

    def __init__(self, entries: Mapping[str, Mapping[str, Entry]]):
        # Private: use Snapshot.build. Entries are already frozen mappings.
        self._entries = entries
        self._hashes = {t: {n: e.hash for n, e in by_name.items()} for t, by_name in entries.items()}
        self._versions = {t: r.version_of(hashes.items()) for t, hashes in self._hashes.items()}
        self._buckets = {t: _Buckets(h) for t, h in self._hashes.items() if len(h) >= _BUCKETED}
        # Checked once here, so that setting one snapshot on many nodes costs nothing per node.
        self._missing = self._dangling()
        self._blobs: dict[str, bytes] = {}

    @classmethod
    def build(cls, resources: Iterable[Message]) -> Snapshot:
        """Group ``resources`` by type. Messages are copied, so later edits by the caller do not leak in.

        Raises InconsistentSnapshot on two resources of one type with the same name (Envoy NACKs that).
        """
        grouped: dict[str, dict[str, Entry]] = {}
        for msg in resources:
            copy = type(msg)()
            copy.CopyFrom(msg)
            entry = Entry.of(copy)
            by_name = grouped.setdefault(entry.type_url, {})
            if entry.name in by_name:
                raise InconsistentSnapshot(
                    f"duplicate {r.SHORT_NAMES.get(entry.type_url, entry.type_url)} resource {entry.name!r}",
                    details={"type_url": entry.type_url, "name": entry.name},
                )
            by_name[entry.name] = entry
        return cls({t: MappingProxyType(dict(sorted(by.items()))) for t, by in grouped.items()})

    @classmethod
    def empty(cls) -> Snapshot:
        return cls({})

    def type_urls(self) -> list[str]:
        """Type URLs present, in push order (known types first)."""
        known = [t for t in r.ORDER if t in self._entries]
        return known + sorted(t for t in self._entries if t not in r.KNOWN_TYPES)

    def entries(self, type_url: str) -> Mapping[str, Entry]:
        return self._entries.get(type_url, _EMPTY)

    def resources(self, type_url: str) -> Mapping[str, Message]:
        """Resources of one type by name. Treat the messages as read-only."""
        return MappingProxyType({n: e.message for n, e in self.entries(type_url).items()})

    def resource_versions(self, type_url: str) -> Mapping[str, str]:
        """Content hash per resource name (what delta xDS calls the resource version)."""
        return MappingProxyType(self._hashes.get(type_url, {}))

    def version(self, type_url: str) -> str:
        """Version of one type; a type with no resources has the (constant) empty version."""
        return self._versions.get(type_url, _EMPTY_VERSION)

    def versions(self) -> dict[str, str]:
        return {t: self.version(t) for t in r.ORDER} | dict(self._versions)

    def _dangling(self) -> tuple[list[str], list[str]]:
        endpoints = self.entries(r.ENDPOINT)
        routes = self.entries(r.ROUTE)
        missing_eds = sorted(
            {
                svc
                for e in self.entries(r.CLUSTER).values()
                if (svc := r.eds_service_name(e.message)) is not None and svc not in endpoints
            }
        )
        missing_rds = sorted(
            {name for e in self.entries(r.LISTENER).values() for name in r.listener_route_names(e.message)}
            - set(routes)
        )
        return missing_eds, missing_rds

    def consistent(self) -> None:
        """Raise InconsistentSnapshot unless every EDS/RDS name referenced here is also defined here.

        A dangling reference would leave a cluster or listener warming forever on the proxy.
        """
        missing_eds, missing_rds = self._missing
        if missing_eds or missing_rds:
            parts = []
            if missing_eds:
                parts.append(f"EDS clusters reference missing ClusterLoadAssignments {missing_eds}")
            if missing_rds:
                parts.append(f"listeners reference missing RouteConfigurations {missing_rds}")
            raise InconsistentSnapshot(
                "; ".join(parts),
                details={"missing_endpoints": missing_eds, "missing_routes": missing_rds},
            )

    def changes_since(self, old: Snapshot, type_url: str) -> tuple[list[str], list[str]] | None:
        """Names changed/added and removed in one (big) type since ``old``, in O(changes).

        None when the type is too small to be bucketed (a plain comparison is cheap then).
        """
        new_b, old_b = self._buckets.get(type_url), old._buckets.get(type_url)
        if new_b is None or old_b is None:
            return None
        return new_b.diff(old_b)

    def sotw_blob(self, type_url: str) -> bytes:
        """Every resource of a type as serialised ``DiscoveryResponse.resources`` fields (cached)."""
        blob = self._blobs.get(type_url)
        if blob is None:
            blob = self._blobs[type_url] = b"".join(e.sotw_field for e in self.entries(type_url).values())
        return blob

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.versions() == other.versions()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.versions().items())))

    def __repr__(self) -> str:
        counts = ", ".join(f"{r.SHORT_NAMES.get(t, t)}={len(self.entries(t))}" for t in self.type_urls())
        return f"Snapshot({counts})"
