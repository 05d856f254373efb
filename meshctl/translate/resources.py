"""Type URLs, ordering, a consistency check and a JSON view of a node's resource set."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from meshctl.errors import InconsistentSnapshot
from meshctl.translate.builders import HCM_FILTER

_PREFIX = "type.googleapis.com/"
CLUSTER_TYPE = _PREFIX + cluster_pb2.Cluster.DESCRIPTOR.full_name
ENDPOINT_TYPE = _PREFIX + endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR.full_name
LISTENER_TYPE = _PREFIX + listener_pb2.Listener.DESCRIPTOR.full_name
ROUTE_TYPE = _PREFIX + route_pb2.RouteConfiguration.DESCRIPTOR.full_name

# The order xDS must deliver them in (make-before-break): clusters before their endpoints,
# listeners before the routes they name.
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)


def type_url(msg: Message) -> str:
    return _PREFIX + msg.DESCRIPTOR.full_name


def resource_name(msg: Message) -> str:
    if isinstance(msg, endpoint_pb2.ClusterLoadAssignment):
        return str(msg.cluster_name)
    return str(msg.name)  # type: ignore[attr-defined]


def sort_resources(resources: Iterable[Message]) -> list[Message]:
    """Type order of `TYPE_ORDER`, then name: the canonical, deterministic order."""
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    return sorted(resources, key=lambda m: (rank.get(type_url(m), len(rank)), type_url(m), resource_name(m)))


def by_type(resources: Iterable[Message]) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {t: [] for t in TYPE_ORDER}
    for msg in resources:
        out.setdefault(type_url(msg), []).append(msg)
    return out


def listener_route_names(listener: listener_pb2.Listener) -> list[str]:
    """RDS names a listener depends on (its filter-chain HCMs or its ApiListener HCM)."""
    packed = []
    if listener.HasField("api_listener"):
        packed.append(listener.api_listener.api_listener)
    for chain in listener.filter_chains:
        packed.extend(f.typed_config for f in chain.filters if f.name == HCM_FILTER)
    names = []
    for any_msg in packed:
        hcm = http_connection_manager_pb2.HttpConnectionManager()
        if any_msg.Unpack(hcm) and hcm.HasField("rds"):
            names.append(hcm.rds.route_config_name)
    return names


def route_cluster_names(rc: route_pb2.RouteConfiguration) -> list[str]:
    names = []
    for vh in rc.virtual_hosts:
        for route in vh.routes:
            if not route.HasField("route"):
                continue
            if route.route.HasField("cluster"):
                names.append(route.route.cluster)
            names.extend(w.name for w in route.route.weighted_clusters.clusters)
    return names


def check_consistent(resources: Sequence[Message]) -> None:
    """Raise InconsistentSnapshot unless every reference inside the set resolves within it.

    EDS clusters need their ClusterLoadAssignment, listeners their RouteConfiguration, routes
    their clusters; names are unique per type.
    """
    groups = by_type(resources)
    names = {t: [resource_name(m) for m in ms] for t, ms in groups.items()}
    for t, ns in names.items():
        dupes = sorted({n for n in ns if ns.count(n) > 1})
        if dupes:
            raise InconsistentSnapshot(f"duplicate {t.rsplit('.', 1)[-1]} names: {dupes}")
    clusters, endpoints = set(names[CLUSTER_TYPE]), set(names[ENDPOINT_TYPE])
    routes = set(names[ROUTE_TYPE])
    for c in groups[CLUSTER_TYPE]:
        assert isinstance(c, cluster_pb2.Cluster)
        eds_name = c.eds_cluster_config.service_name or c.name
        if c.type == cluster_pb2.Cluster.EDS and eds_name not in endpoints:
            raise InconsistentSnapshot(f"cluster {c.name} has no ClusterLoadAssignment {eds_name}")
    for lst in groups[LISTENER_TYPE]:
        assert isinstance(lst, listener_pb2.Listener)
        for rn in listener_route_names(lst):
            if rn not in routes:
                raise InconsistentSnapshot(f"listener {lst.name} names missing route config {rn}")
    for rc in groups[ROUTE_TYPE]:
        assert isinstance(rc, route_pb2.RouteConfiguration)
        for cn in route_cluster_names(rc):
            if cn not in clusters:
                raise InconsistentSnapshot(f"route config {rc.name} names missing cluster {cn}")


def to_dicts(resources: Iterable[Message]) -> list[dict[str, Any]]:
    """JSON-able view (Any fields expanded, stable key order) for `explain`, the API and goldens."""
    return [
        {
            "type_url": type_url(m),
            "name": resource_name(m),
            "resource": json_format.MessageToDict(m, preserving_proto_field_name=True),
        }
        for m in sort_resources(resources)
    ]


def to_json(resources: Iterable[Message]) -> str:
    return json.dumps(to_dicts(resources), indent=2, sort_keys=True) + "\n"
