"""xDS v3 resource types, naming, hashing, and the references between resources.

Everything here is a pure function of protobuf messages. The server and the snapshot use the
reference helpers to check consistency and to keep clusters alive while routes still use them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from meshctl.errors import ValidationFailed

log = logging.getLogger("meshctl.xds")

_PREFIX = "type.googleapis.com/"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"

# Make-before-break push order: a route must never point at a cluster Envoy does not know yet.
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# Listeners and routes wait until these are ACKed. Endpoints must NOT wait for the cluster ACK:
# Envoy ACKs CDS only once new clusters have warmed, and warming needs their endpoints.
CLUSTER_TYPES = frozenset((CLUSTER, ENDPOINT))
KNOWN_TYPES = frozenset(ORDER)
# Only these types have "wildcard" semantics (the server decides the set) in the xDS spec.
WILDCARD_TYPES = frozenset((LISTENER, CLUSTER))
SHORT_NAMES = {LISTENER: "listeners", ROUTE: "routes", CLUSTER: "clusters", ENDPOINT: "endpoints"}

_HCM_TYPE = _PREFIX + http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_HASH_LEN = 16


def type_url_of(msg: Message) -> str:
    return _PREFIX + msg.DESCRIPTOR.full_name


def resource_name(msg: Message) -> str:
    """The xDS name of a resource: ``name``, or ``cluster_name`` for a ClusterLoadAssignment."""
    fields = msg.DESCRIPTOR.fields_by_name
    for field in ("name", "cluster_name"):
        if field in fields:
            value = getattr(msg, field)
            if not value:
                raise ValidationFailed(f"{msg.DESCRIPTOR.name} has an empty {field}", field=field)
            return str(value)
    raise ValidationFailed(f"{msg.DESCRIPTOR.full_name} has no name field", field="resources")


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_HASH_LEN]


def resource_hash(msg: Message) -> str:
    """Content hash; deterministic serialisation makes map ordering irrelevant."""
    return _short(msg.SerializeToString(deterministic=True))


def version_of(pairs: Iterable[tuple[str, str]]) -> str:
    """Version of a set of resources from their (name, hash) pairs, independent of order."""
    h = hashlib.sha256()
    for name, digest in sorted(pairs):
        # NUL cannot occur in a resource name, so the encoding is unambiguous.
        h.update(name.encode())
        h.update(b"\0")
        h.update(digest.encode())
        h.update(b"\0")
    return h.hexdigest()[:_HASH_LEN]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def len_field(number: int, data: bytes) -> bytes:
    """One length-delimited protobuf field. Messages are field concatenations, so a response can be
    assembled from resource bytes serialised once per snapshot instead of once per stream."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


# Field numbers of `resources` in DiscoveryResponse and DeltaDiscoveryResponse (both 2).
_RESOURCES_FIELD = 2


class Entry:
    """One resource prepared for the wire: hashed and packed once, shared by every stream."""

    __slots__ = ("_delta_field", "_refs", "_sotw_field", "hash", "message", "name", "packed", "type_url")

    def __init__(self, name: str, type_url: str, digest: str, message: Message, packed: any_pb2.Any):
        self.name = name
        self.type_url = type_url
        self.hash = digest
        self.message = message
        self.packed = packed
        self._sotw_field: bytes | None = None
        self._delta_field: bytes | None = None
        self._refs: frozenset[str] | None = None

    @classmethod
    def of(cls, msg: Message) -> Entry:
        data = msg.SerializeToString(deterministic=True)
        type_url = type_url_of(msg)
        return cls(
            resource_name(msg), type_url, _short(data), msg, any_pb2.Any(type_url=type_url, value=data)
        )

    @property
    def sotw_field(self) -> bytes:
        """This resource as a ``DiscoveryResponse.resources`` field, on the wire."""
        if self._sotw_field is None:
            self._sotw_field = len_field(_RESOURCES_FIELD, self.packed.SerializeToString())
        return self._sotw_field

    @property
    def delta_field(self) -> bytes:
        """This resource as a ``DeltaDiscoveryResponse.resources`` field, on the wire."""
        if self._delta_field is None:
            res = discovery_pb2.Resource(name=self.name, version=self.hash, resource=self.packed)
            self._delta_field = len_field(_RESOURCES_FIELD, res.SerializeToString())
        return self._delta_field

    @property
    def cluster_refs(self) -> frozenset[str]:
        """Clusters a RouteConfiguration entry sends traffic to (empty for other types)."""
        if self._refs is None:
            self._refs = frozenset(route_cluster_names(self.message))
        return self._refs

    def __repr__(self) -> str:
        return f"Entry({SHORT_NAMES.get(self.type_url, self.type_url)}/{self.name}@{self.hash})"


def eds_service_name(cluster: Message) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster needs, or None for other cluster types."""
    if not isinstance(cluster, cluster_pb2.Cluster):
        return None
    if cluster.WhichOneof("cluster_discovery_type") != "type" or cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return cluster.eds_cluster_config.service_name or cluster.name


def _hcms(listener: listener_pb2.Listener) -> Iterable[http_connection_manager_pb2.HttpConnectionManager]:
    anys: list[any_pb2.Any] = []
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        anys.extend(f.typed_config for f in chain.filters if f.HasField("typed_config"))
    if listener.HasField("api_listener"):
        anys.append(listener.api_listener.api_listener)
    for packed in anys:
        if packed.type_url != _HCM_TYPE:
            continue
        hcm = http_connection_manager_pb2.HttpConnectionManager()
        try:
            hcm.ParseFromString(packed.value)
        except DecodeError:
            # A broken filter config is Envoy's to NACK; it references nothing we can check.
            log.warning("listener %s: undecodable HttpConnectionManager", listener.name)
            continue
        yield hcm


def listener_route_names(listener: Message) -> set[str]:
    """RDS route_config_names a listener's HttpConnectionManagers fetch."""
    if not isinstance(listener, listener_pb2.Listener):
        return set()
    return {
        hcm.rds.route_config_name for hcm in _hcms(listener) if hcm.WhichOneof("route_specifier") == "rds"
    }


def route_cluster_names(route_config: Message) -> set[str]:
    """Clusters a RouteConfiguration sends traffic to (direct and weighted)."""
    names: set[str] = set()
    if not isinstance(route_config, route_pb2.RouteConfiguration):
        return names
    for vhost in route_config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            which = action.WhichOneof("cluster_specifier")
            if which == "cluster":
                names.add(action.cluster)
            elif which == "weighted_clusters":
                names.update(c.name for c in action.weighted_clusters.clusters)
    return names
