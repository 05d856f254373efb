"""Make-before-break: which removed clusters (and their endpoints) a proxy must keep for now.

A cluster leaves a proxy only once no route the proxy may be using still sends traffic to it.
"May be using" is the union of the routes it ACKed and the routes sent to it but not yet ACKed,
because either could be live when the next response lands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from meshctl.xds import resources as r
from meshctl.xds.resources import Entry
from meshctl.xds.snapshot import Snapshot

Held = Sequence[Mapping[str, Entry]]  # where to look up what the client holds, first match wins
_NOTHING: dict[str, dict[str, Entry]] = {r.CLUSTER: {}, r.ENDPOINT: {}}


def route_refs(routes: Iterable[Entry]) -> set[str]:
    refs: set[str] = set()
    for entry in routes:
        refs |= entry.cluster_refs
    return refs


def _find(name: str, held: Held) -> Entry | None:
    for mapping in held:
        entry = mapping.get(name)
        if entry is not None:
            return entry
    return None


def kept_resources(
    snapshot: Snapshot, clusters_held: Held, endpoints_held: Held, refs: set[str]
) -> dict[str, dict[str, Entry]]:
    """Old clusters (and the endpoints they use) absent from ``snapshot`` but still referenced.

    Returns {CLUSTER: {...}, ENDPOINT: {...}}; both empty when nothing needs keeping. Costs
    O(referenced clusters), not O(clusters): it runs on every push decision.
    """
    new_clusters = snapshot.entries(r.CLUSTER)
    kept_clusters: dict[str, Entry] = {}
    for name in refs:
        if name not in new_clusters and (entry := _find(name, clusters_held)) is not None:
            kept_clusters[name] = entry
    if not kept_clusters:
        return _NOTHING
    new_endpoints = snapshot.entries(r.ENDPOINT)
    kept_endpoints: dict[str, Entry] = {}
    for cluster in kept_clusters.values():
        svc = r.eds_service_name(cluster.message)
        if svc is not None and svc not in new_endpoints and (entry := _find(svc, endpoints_held)) is not None:
            kept_endpoints[svc] = entry
    return {r.CLUSTER: kept_clusters, r.ENDPOINT: kept_endpoints}


def with_kept(
    snapshot: Snapshot, type_url: str, chosen: Mapping[str, Entry], kept: Mapping[str, Entry]
) -> tuple[dict[str, Entry], str]:
    """Add kept resources to a response and give it the version of its full content.

    The version hashes the snapshot's resources plus the kept ones, so when the kept set equals
    what was removed the version equals the previous snapshot's, and an unchanged proxy gets no
    needless response.
    """
    merged = dict(chosen)
    merged.update(kept)
    pairs = [(n, e.hash) for n, e in snapshot.entries(type_url).items()]
    pairs += [(n, e.hash) for n, e in kept.items()]
    return merged, r.version_of(pairs)
