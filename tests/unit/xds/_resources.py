"""Minimal, Envoy-valid xDS resources for tests (the real ones come from meshctl.translate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, duration_pb2, message

from meshctl.xds.snapshot import Snapshot


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _pack(msg: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def cluster(name: str, *, service_name: str = "", connect_timeout_ms: int = 250) -> cluster_pb2.Cluster:
    """An EDS cluster whose endpoints come over ADS."""
    c = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(nanos=connect_timeout_ms * 1_000_000),
    )
    c.eds_cluster_config.eds_config.CopyFrom(_ads())
    if service_name:
        c.eds_cluster_config.service_name = service_name
    return c


def static_cluster(name: str, port: int = 9) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
    c.load_assignment.CopyFrom(cla(name, port=port))
    return c


def cla(name: str, *, port: int = 8080, address: str = "127.0.0.1") -> endpoint_pb2.ClusterLoadAssignment:
    lb = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        )
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[lb])]
    )


def listener(name: str, route_name: str, *, port: int = 15001) -> listener_pb2.Listener:
    """An HTTP listener whose HttpConnectionManager fetches ``route_name`` over RDS/ADS."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(route_config_name=route_name, config_source=_ads()),
        http_filters=[
            hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router()))
        ],
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_pack(manager)
                    )
                ]
            )
        ],
    )


def api_listener(name: str, route_name: str) -> listener_pb2.Listener:
    """What gRPC proxyless clients fetch: an api_listener with an RDS HttpConnectionManager."""
    manager = hcm_pb2.HttpConnectionManager(
        rds=hcm_pb2.Rds(route_config_name=route_name, config_source=_ads())
    )
    lst = listener_pb2.Listener(name=name)
    lst.api_listener.api_listener.CopyFrom(_pack(manager))
    return lst


def route(
    name: str, clusters: Mapping[str, int] | Sequence[str], *, domain: str = "*"
) -> route_pb2.RouteConfiguration:
    """One virtual host, one catch-all route: a single cluster, or weighted clusters."""
    weights = dict(clusters) if isinstance(clusters, Mapping) else {c: 1 for c in clusters}
    action = route_components_pb2.RouteAction()
    if len(weights) == 1:
        action.cluster = next(iter(weights))
    else:
        for cname, weight in weights.items():
            action.weighted_clusters.clusters.add(name=cname).weight.value = weight
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=name,
                domains=[domain],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=action,
                    )
                ],
            )
        ],
    )


def mesh(
    clusters: Mapping[str, int] | Sequence[str],
    *,
    listener_name: str = "outbound",
    route_name: str = "outbound",
    port: int = 15001,
    endpoint_port: int = 8080,
    extra_clusters: Sequence[str] = (),
) -> list[message.Message]:
    """A consistent node config: EDS clusters + endpoints, one listener, one route over the clusters."""
    names = list(clusters) + list(extra_clusters)
    out: list[message.Message] = []
    for n in names:
        out += [cluster(n), cla(n, port=endpoint_port)]
    out += [listener(listener_name, route_name, port=port), route(route_name, clusters)]
    return out


def snapshot(clusters: Mapping[str, int] | Sequence[str], **kw: object) -> Snapshot:
    return Snapshot.build(mesh(clusters, **kw))  # type: ignore[arg-type]
