"""Make-before-break: which removed clusters (and their endpoints) a proxy must keep for now.

A cluster leaves a proxy only once no route the proxy may be using still sends traffic to it.
"May be using" is the union of the routes it ACKed and the routes sent to it but not yet ACKed,
because either could be live when the next response lands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshctl.xds import resources as r
from meshctl.xds.resources import Entry
from meshctl.xds.snapshot import Snapshot


def route_refs(routes: Iterable[Entry]) -> set[str]:
    refs: set[str] = set()
    for entry in routes:
        refs |= r.route_cluster_names(entry.message)
    return refs


def kept_resources(
    snapshot: Snapshot,
    client_clusters: Mapping[str, Entry],
    client_endpoints: Mapping[str, Entry],
    refs: set[str],
) -> dict[str, dict[str, Entry]]:
    """Old clusters (and the endpoints they use) absent from ``snapshot`` but still referenced.

    Returns {CLUSTER: {...}, ENDPOINT: {...}}; both empty when nothing needs keeping.
    """
    new_clusters = snapshot.entries(r.CLUSTER)
    kept_clusters = {n: e for n, e in client_clusters.items() if n in refs and n not in new_clusters}
    new_endpoints = snapshot.entries(r.ENDPOINT)
    services = {s for e in kept_clusters.values() if (s := r.eds_service_name(e.message)) is not None}
    kept_endpoints = {
        s: client_endpoints[s] for s in services if s in client_endpoints and s not in new_endpoints
    }
    return {r.CLUSTER: kept_clusters, r.ENDPOINT: kept_endpoints}


def with_kept(
    snapshot: Snapshot, type_url: str, chosen: dict[str, Entry], kept: Mapping[str, Entry]
) -> tuple[dict[str, Entry], str]:
    """Add kept resources to a response and give it the version of its full content.

    With nothing kept the version is the snapshot's; when the kept set equals what was removed the
    version equals the previous snapshot's, so an unchanged proxy gets no needless response.
    """
    if not kept:
        return chosen, snapshot.version(type_url)
    merged = dict(chosen)
    merged.update(kept)
    pairs = [(n, e.hash) for n, e in snapshot.entries(type_url).items()]
    pairs += [(n, e.hash) for n, e in kept.items()]
    return merged, r.version_of(pairs)
