"""Ready-made resource sets for protocol tests, composed from meshctl.translate.builders.

These describe plain routing (no contracts), so the xDS tests exercise the protocol and Envoy,
not the translator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf.message import Message

from meshctl.translate import builders as b

LISTENER = "outbound"
ROUTE = "outbound-routes"


def http_resources(
    listener_port: int,
    backends: Mapping[str, Sequence[int]],
    *,
    route_to: str | None = None,
    domains: Sequence[str] = ("*",),
    extra_routes: Sequence[route_components_pb2.Route] = (),
) -> list[Message]:
    """Listener (HCM over RDS/ADS) + RouteConfiguration + one EDS cluster and its endpoints per
    backend (name -> loopback ports). Everything under "/" goes to `route_to` (default: the first
    backend)."""
    target = route_to or next(iter(backends))
    routes = [*extra_routes, b.simple_route("/", target)]
    out: list[Message] = [
        b.outbound_listener(LISTENER, listener_port, ROUTE),
        b.route_configuration(ROUTE, [b.virtual_host("all", list(domains), routes)]),
    ]
    for name, ports in backends.items():
        out.append(b.eds_cluster(name, outlier=False))
        out.append(b.load_assignment(name, [b.LbEndpointSpec("127.0.0.1", p) for p in ports]))
    return out


def bad_regex_route(regex: str = "(unclosed") -> route_components_pb2.Route:
    """A route Envoy rejects when it loads the RouteConfiguration (RE2 cannot compile it)."""
    return route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex=regex)),
        direct_response=route_components_pb2.DirectResponseAction(status=418),
    )


def bad_ring_hash_cluster(name: str) -> list[Message]:
    """An EDS cluster (with its endpoints, so the snapshot stays consistent) whose ring-hash
    bounds are inverted; Envoy rejects the CDS update that carries it."""
    cluster = b.eds_cluster(name, outlier=False)
    cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
    cluster.ring_hash_lb_config.minimum_ring_size.value = 100000
    cluster.ring_hash_lb_config.maximum_ring_size.value = 10
    return [cluster, b.load_assignment(name, [b.LbEndpointSpec("127.0.0.1", 9)])]


def grpc_resources(target: str, cluster: str, ports: Sequence[int]) -> list[Message]:
    """What a proxyless gRPC client resolving ``xds:///target`` needs: an ApiListener named
    `target`, its RouteConfiguration, one EDS cluster and its endpoints."""
    route_name = f"{target}-routes"
    return [
        b.api_listener(target, route_name),
        b.route_configuration(route_name, [b.virtual_host(target, [target], [b.simple_route("", cluster)])]),
        b.eds_cluster(cluster, outlier=False, http2=True),
        b.load_assignment(cluster, [b.LbEndpointSpec("127.0.0.1", p, zone="zone-a") for p in ports]),
    ]


def static_cluster(name: str, port: int, connect_timeout_ms: int = 1000) -> cluster_pb2.Cluster:
    """A STATIC cluster with its endpoint inline: nothing to warm, so a change is one CDS update."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=b.duration_ms(connect_timeout_ms),
        load_assignment=b.load_assignment(name, [b.LbEndpointSpec("127.0.0.1", port)]),
    )
    return cluster


def many_static_clusters(count: int, port: int, changed: dict[int, int] | None = None) -> list[Message]:
    """`count` STATIC clusters c00000..; `changed` maps cluster index -> connect timeout (ms)."""
    changed = changed or {}
    return [static_cluster(f"c{i:05d}", port, changed.get(i, 1000)) for i in range(count)]
