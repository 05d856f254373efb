"""The capability graph: zones, links, providers and consumers as one networkx graph.

Node ids are prefixed by kind (``zone:eu-west-1a``, ``provider:p1``, ``consumer:checkout``) so that a
zone and a provider may share a name. Link edges join zones and carry ``latency_ms``; providers and
consumers hang off their zone by an edge of kind ``hosts`` / ``located``. The graph keeps one
invariant: every provider and consumer is attached to a known zone.

Latency queries run on a second, zone-only graph: providers and consumers are leaves, so they can
never shorten a path, and leaving them out keeps Dijkstra on ~100 nodes instead of ~10,000.
Shortest-path rows are computed lazily per source zone and dropped only when a zone or link
changes, so provider churn (the frequent event) never costs a path recomputation.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import networkx as nx

from meshctl.errors import Conflict, ValidationFailed
from meshctl.model import Link, Provider, Zone

_EMPTY: Mapping[str, float] = MappingProxyType({})


def _zid(name: str) -> str:
    return f"zone:{name}"


def _pid(provider_id: str) -> str:
    return f"provider:{provider_id}"


def _cid(service: str) -> str:
    return f"consumer:{service}"


class CapabilityGraph:
    """The live model the solver reads. Not thread-safe: one event loop owns it."""

    def __init__(self, *, intra_zone_latency_ms: float = 0.5) -> None:
        self._g = nx.Graph()
        self._net = nx.Graph()  # zones + links only; what latency queries run on
        self._zones: dict[str, Zone] = {}
        self._links: dict[tuple[str, str], Link] = {}
        self._providers: dict[str, Provider] = {}
        self._by_capability: dict[str, dict[str, Provider]] = {}
        self._consumers: dict[str, str] = {}
        self._intra_zone_latency_ms = float(intra_zone_latency_ms)
        self._rows: dict[str, dict[str, float]] = {}
        self.version = 0

    # -- mutation -------------------------------------------------------------------------------

    def _changed(self, *, network: bool = False) -> None:
        self.version += 1
        if network:
            self._rows.clear()

    @property
    def intra_zone_latency_ms(self) -> float:
        return self._intra_zone_latency_ms

    def set_intra_zone_latency(self, latency_ms: float) -> None:
        if latency_ms < 0:
            raise ValidationFailed("intra-zone latency must be >= 0", field="intra_zone_latency_ms")
        if latency_ms != self._intra_zone_latency_ms:
            self._intra_zone_latency_ms = float(latency_ms)
            self._changed(network=True)

    def set_zone(self, zone: Zone) -> None:
        old = self._zones.get(zone.name)
        if old == zone:
            return
        self._zones[zone.name] = zone
        self._g.add_node(_zid(zone.name), kind="zone", name=zone.name, region=zone.region)
        self._net.add_node(zone.name)
        if old is not None and old.region != zone.region:
            # Provider.region is derived from its zone; keep it true when a zone moves region.
            for p in list(self._providers.values()):
                if p.zone == zone.name:
                    self._put_provider(p.model_copy(update={"region": zone.region}))
        self._changed(network=True)

    def remove_zone(self, name: str) -> bool:
        """Remove a zone, its links and the consumers located in it (their proxies will report a
        zone again when they reconnect). Refuses (Conflict) while providers live in it: they hold
        capacity that contracts depend on, so they must leave first."""
        if name not in self._zones:
            return False
        tenants = sorted(p.id for p in self._providers.values() if p.zone == name)
        if tenants:
            raise Conflict(
                f"zone {name} still hosts {', '.join(tenants[:5])}" + (" ..." if len(tenants) > 5 else ""),
                field="zone",
                details={"zone": name, "providers": tenants},
            )
        for service in [s for s, z in self._consumers.items() if z == name]:
            del self._consumers[service]
            self._g.remove_node(_cid(service))
        for key in [k for k in self._links if name in k]:
            del self._links[key]
        del self._zones[name]
        self._g.remove_node(_zid(name))
        self._net.remove_node(name)
        self._changed(network=True)
        return True

    def set_link(self, link: Link) -> None:
        for fname, zname in (("a", link.a), ("b", link.b)):
            if zname not in self._zones:
                raise ValidationFailed(f"link refers to unknown zone {zname}", field=fname)
        if link.a == link.b:
            raise ValidationFailed("a link joins two different zones", field="b")
        key = link.key
        if self._links.get(key) == link:
            return
        self._links[key] = link
        self._g.add_edge(_zid(link.a), _zid(link.b), kind="link", latency_ms=link.latency_ms)
        self._net.add_edge(link.a, link.b, latency_ms=link.latency_ms)
        self._changed(network=True)

    def remove_link(self, a: str, b: str) -> bool:
        key = (a, b) if a <= b else (b, a)
        if key not in self._links:
            return False
        del self._links[key]
        self._g.remove_edge(_zid(a), _zid(b))
        self._net.remove_edge(a, b)
        self._changed(network=True)
        return True

    def set_provider(self, provider: Provider) -> Provider:
        """Add or replace a provider; returns it as stored (``region`` filled in from its zone)."""
        zone = self._zones.get(provider.zone)
        if zone is None:
            raise ValidationFailed(f"unknown zone {provider.zone}", field="zone")
        if provider.region != zone.region:
            provider = provider.model_copy(update={"region": zone.region})
        if self._providers.get(provider.id) == provider:
            return provider
        self._put_provider(provider)
        self._changed()
        return provider

    def _put_provider(self, provider: Provider) -> None:
        old = self._providers.get(provider.id)
        nid = _pid(provider.id)
        if old is not None:
            for cap in old.capabilities:
                self._unindex(cap, old.id)
            if old.zone != provider.zone:
                self._g.remove_edge(nid, _zid(old.zone))
        self._providers[provider.id] = provider
        for cap in provider.capabilities:
            self._by_capability.setdefault(cap, {})[provider.id] = provider
        self._g.add_node(nid, kind="provider", **provider.model_dump(mode="json"))
        self._g.add_edge(nid, _zid(provider.zone), kind="hosts")

    def _unindex(self, capability: str, provider_id: str) -> None:
        bucket = self._by_capability.get(capability)
        if bucket is not None:
            bucket.pop(provider_id, None)
            if not bucket:
                del self._by_capability[capability]

    def remove_provider(self, provider_id: str) -> bool:
        old = self._providers.pop(provider_id, None)
        if old is None:
            return False
        for cap in old.capabilities:
            self._unindex(cap, provider_id)
        self._g.remove_node(_pid(provider_id))
        self._changed()
        return True

    def set_consumer(self, service: str, zone: str) -> None:
        if zone not in self._zones:
            raise ValidationFailed(f"unknown zone {zone}", field="zone")
        old = self._consumers.get(service)
        if old == zone:
            return
        nid = _cid(service)
        if old is not None:
            self._g.remove_edge(nid, _zid(old))
        self._consumers[service] = zone
        self._g.add_node(nid, kind="consumer", service=service, zone=zone)
        self._g.add_edge(nid, _zid(zone), kind="located")
        self._changed()

    def remove_consumer(self, service: str) -> bool:
        if self._consumers.pop(service, None) is None:
            return False
        self._g.remove_node(_cid(service))
        self._changed()
        return True

    # -- queries ----------------------------------------------------------------------------------

    def zone(self, name: str) -> Zone | None:
        return self._zones.get(name)

    def zones(self) -> list[Zone]:
        return list(self._zones.values())

    def links(self) -> list[Link]:
        return list(self._links.values())

    def provider(self, provider_id: str) -> Provider | None:
        return self._providers.get(provider_id)

    def providers(self) -> list[Provider]:
        return list(self._providers.values())

    def providers_for(self, capability: str) -> list[Provider]:
        bucket = self._by_capability.get(capability)
        return list(bucket.values()) if bucket else []

    def capabilities(self) -> list[str]:
        return sorted(self._by_capability)

    def consumer_zone(self, service: str) -> str | None:
        return self._consumers.get(service)

    def consumers(self) -> dict[str, str]:
        return dict(self._consumers)

    def region_of(self, zone: str) -> str | None:
        z = self._zones.get(zone)
        return z.region if z is not None else None

    def zone_latency(self, a: str, b: str) -> float | None:
        """Shortest-path latency in ms from zone a to zone b; None if either is unknown or unreachable."""
        return self.latency_row(a).get(b)

    def latency_row(self, a: str) -> Mapping[str, float]:
        """Latency from zone a to every zone reachable from it (a itself at the intra-zone latency);
        empty if a is unknown. The cached row itself: read it, do not keep it across changes."""
        row = self._rows.get(a)
        if row is None:
            if a not in self._zones:
                return _EMPTY
            row = nx.single_source_dijkstra_path_length(self._net, a, weight="latency_ms")
            row[a] = self._intra_zone_latency_ms
            self._rows[a] = row
        return row

    def node_link(self) -> dict[str, Any]:
        """The whole graph as networkx node-link JSON (``nodes`` / ``links``), JSON-serialisable."""
        data: dict[str, Any] = nx.node_link_data(self._g, edges="links")
        data["graph"] = {"version": self.version, "intra_zone_latency_ms": self._intra_zone_latency_ms}
        return data

    def __len__(self) -> int:
        return self._g.number_of_nodes()
