"""Small pure builders of Envoy v3 resources (xds-protos messages).

They know nothing of contracts: `meshctl.translate.node` decides the numbers, these only shape
the protos, so the xDS layer and tests can build resources the same way. Every typed config is
packed with `Any.Pack`, which yields the v3 type URL `type.googleapis.com/<full proto name>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2, token_bucket_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

HCM_FILTER = "envoy.filters.network.http_connection_manager"
LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit"
ROUTER_FILTER = "envoy.filters.http.router"
PREVIOUS_HOSTS_PREDICATE = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"
HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def duration_ms(ms: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(ms)
    return d


def _ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def _u32(value: int | None) -> wrappers_pb2.UInt32Value | None:
    return None if value is None else wrappers_pb2.UInt32Value(value=value)


# --- clusters and endpoints -----------------------------------------------------------------------


def eds_cluster(
    name: str,
    *,
    connect_timeout_ms: int = 1000,
    max_requests: int | None = None,
    max_pending: int | None = None,
    max_retries: int | None = None,
    outlier: bool = True,
    http2: bool = False,
) -> cluster_pb2.Cluster:
    """An EDS cluster fed over ADS, round robin, with circuit breakers and outlier detection."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads_source()),
        connect_timeout=duration_ms(connect_timeout_ms),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )
    if any(v is not None for v in (max_requests, max_pending, max_retries)):
        cluster.circuit_breakers.CopyFrom(
            circuit_breaker_pb2.CircuitBreakers(
                thresholds=[
                    circuit_breaker_pb2.CircuitBreakers.Thresholds(
                        priority=base_pb2.RoutingPriority.DEFAULT,
                        max_requests=_u32(max_requests),
                        max_pending_requests=_u32(max_pending),
                        max_retries=_u32(max_retries),
                    )
                ]
            )
        )
    if outlier:
        # Three 5xx in a row eject a host for 5 s (growing with repeated ejections). Up to 100% may
        # be ejected so that a dead primary provider hands its traffic to the priority-1 failover
        # endpoints instead of Envoy keeping a floor of "healthy" dead hosts.
        cluster.outlier_detection.CopyFrom(
            outlier_detection_pb2.OutlierDetection(
                consecutive_5xx=_u32(3),
                interval=duration_ms(1000),
                base_ejection_time=duration_ms(5000),
                max_ejection_percent=_u32(100),
            )
        )
    if http2:
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(pack(options))
    return cluster


@dataclass(frozen=True)
class LbEndpointSpec:
    address: str
    port: int
    zone: str = ""
    region: str = ""
    priority: int = 0
    weight: int = 1


def load_assignment(
    cluster_name: str, endpoints: Sequence[LbEndpointSpec]
) -> endpoint_pb2.ClusterLoadAssignment:
    """Endpoints grouped into one LocalityLbEndpoints per (region, zone, priority).

    Groups keep first-seen order, so callers control the output order. Each group carries a
    locality weight (sum of its endpoint weights): Envoy ignores it without locality-weighted
    LB, but gRPC proxyless clients drop localities that have no weight.
    """
    groups: dict[tuple[str, str, int], list[LbEndpointSpec]] = {}
    for ep in endpoints:
        groups.setdefault((ep.region, ep.zone, ep.priority), []).append(ep)
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    for (region, zone, priority), members in groups.items():
        cla.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region=region, zone=zone),
                priority=priority,
                load_balancing_weight=_u32(sum(m.weight for m in members)),
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(address=m.address, port_value=m.port)
                            )
                        ),
                        load_balancing_weight=_u32(m.weight),
                    )
                    for m in members
                ],
            )
        )
    return cla


# --- routes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySpec:
    retry_on: str = "5xx,reset,connect-failure,refused-stream"
    num_retries: int = 2
    per_try_timeout_ms: int | None = None
    previous_hosts: bool = True
    host_selection_retry_max_attempts: int = 3
    # After this many attempts at one priority, retries move to the next (failover) priority.
    previous_priorities_update_frequency: int | None = None


def retry_policy(spec: RetrySpec) -> route_components_pb2.RetryPolicy:
    policy = route_components_pb2.RetryPolicy(
        retry_on=spec.retry_on,
        num_retries=_u32(spec.num_retries),
        host_selection_retry_max_attempts=spec.host_selection_retry_max_attempts,
    )
    if spec.per_try_timeout_ms is not None:
        policy.per_try_timeout.CopyFrom(duration_ms(spec.per_try_timeout_ms))
    if spec.previous_hosts:
        policy.retry_host_predicate.append(
            route_components_pb2.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS_PREDICATE, typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
            )
        )
    if spec.previous_priorities_update_frequency is not None:
        policy.retry_priority.CopyFrom(
            route_components_pb2.RetryPolicy.RetryPriority(
                name=PREVIOUS_PRIORITIES,
                typed_config=pack(
                    previous_priorities_config_pb2.PreviousPrioritiesConfig(
                        update_frequency=spec.previous_priorities_update_frequency
                    )
                ),
            )
        )
    return policy


def local_rate_limit(
    stat_prefix: str,
    *,
    max_tokens: int,
    tokens_per_fill: int,
    fill_interval_ms: int = 1000,
    runtime_prefix: str = "meshctl_ratelimit",
    limited_header: tuple[str, str] | None = ("x-mesh-ratelimited", "true"),
) -> local_rate_limit_pb2.LocalRateLimit:
    """A per-route local rate limit (token bucket), enabled and enforced for 100% of requests.

    The runtime keys let an operator switch enforcement off (shadow mode) without a config push.
    """

    def _full(key: str) -> base_pb2.RuntimeFractionalPercent:
        return base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(
                numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
            ),
            runtime_key=f"{runtime_prefix}.{key}",
        )

    config = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix,
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=max_tokens,
            tokens_per_fill=_u32(tokens_per_fill),
            fill_interval=duration_ms(fill_interval_ms),
        ),
        filter_enabled=_full("enabled"),
        filter_enforced=_full("enforced"),
        status=http_status_pb2.HttpStatus(code=http_status_pb2.TooManyRequests),
    )
    if limited_header is not None:
        config.response_headers_to_add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=limited_header[0], value=limited_header[1]),
                append_action=_OVERWRITE,
            )
        )
    return config


def weighted_route(
    clusters: Sequence[tuple[str, int]],
    *,
    name: str = "",
    prefix: str = "/",
    header_matches: Mapping[str, str] | None = None,
    timeout_ms: int | None = None,
    retry: RetrySpec | None = None,
    request_headers: Mapping[str, str] | None = None,
    per_filter_config: Mapping[str, Message] | None = None,
    max_stream_duration_ms: int | None = None,
) -> route_components_pb2.Route:
    """A route splitting traffic over `clusters` [(cluster name, weight)], in the given order.

    `max_stream_duration_ms` is the deadline gRPC proxyless clients honour (they ignore `timeout`).
    Header and filter-config mappings are emitted in sorted key order for byte-stable output.
    """
    match = route_components_pb2.RouteMatch(prefix=prefix)
    for key, value in sorted((header_matches or {}).items()):
        match.headers.append(route_components_pb2.HeaderMatcher(name=key, string_match=_exact(value)))
    action = route_components_pb2.RouteAction(
        weighted_clusters=route_components_pb2.WeightedCluster(
            clusters=[
                route_components_pb2.WeightedCluster.ClusterWeight(name=c, weight=_u32(w))
                for c, w in clusters
            ]
        )
    )
    if timeout_ms is not None:
        action.timeout.CopyFrom(duration_ms(timeout_ms))
    if retry is not None:
        action.retry_policy.CopyFrom(retry_policy(retry))
    if max_stream_duration_ms is not None:
        action.max_stream_duration.max_stream_duration.CopyFrom(duration_ms(max_stream_duration_ms))
    route = route_components_pb2.Route(name=name, match=match, route=action)
    for key, value in sorted((request_headers or {}).items()):
        route.request_headers_to_add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
            )
        )
    for filter_name, config in sorted((per_filter_config or {}).items()):
        route.typed_per_filter_config[filter_name].CopyFrom(pack(config))
    return route


def direct_response_route(
    status: int,
    body: str,
    *,
    name: str = "",
    prefix: str = "/",
    header_matches: Mapping[str, str] | None = None,
) -> route_components_pb2.Route:
    """A route that answers itself (e.g. 503 when a contract has no live provider left)."""
    match = route_components_pb2.RouteMatch(prefix=prefix)
    for key, value in sorted((header_matches or {}).items()):
        match.headers.append(route_components_pb2.HeaderMatcher(name=key, string_match=_exact(value)))
    return route_components_pb2.Route(
        name=name,
        match=match,
        direct_response=route_components_pb2.DirectResponseAction(
            status=status, body=base_pb2.DataSource(inline_string=body)
        ),
    )


def simple_route(prefix: str, cluster: str) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix=prefix),
        route=route_components_pb2.RouteAction(cluster=cluster),
    )


def virtual_host(
    name: str, domains: Sequence[str], routes: Sequence[route_components_pb2.Route]
) -> route_components_pb2.VirtualHost:
    return route_components_pb2.VirtualHost(name=name, domains=list(domains), routes=list(routes))


def route_configuration(
    name: str, virtual_hosts: Sequence[route_components_pb2.VirtualHost]
) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=list(virtual_hosts))


def _exact(value: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=value)


# --- listeners ------------------------------------------------------------------------------------


def _hcm(
    stat_prefix: str, route_config_name: str, filters: Sequence[tuple[str, Message]]
) -> http_connection_manager_pb2.HttpConnectionManager:
    hcm_pb = http_connection_manager_pb2
    return hcm_pb.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb.HttpConnectionManager.AUTO,
        rds=hcm_pb.Rds(config_source=_ads_source(), route_config_name=route_config_name),
        http_filters=[hcm_pb.HttpFilter(name=n, typed_config=pack(c)) for n, c in filters],
    )


def outbound_listener(
    name: str,
    port: int,
    route_config_name: str,
    *,
    address: str = "127.0.0.1",
    stat_prefix: str = "outbound",
) -> listener_pb2.Listener:
    """The sidecar's outbound HTTP listener; routes arrive over RDS so contract changes never
    touch (and drain) the listener.

    The local rate limit filter has no bucket here: only routes carrying a per-route config
    are limited, everything else passes through.
    """
    hcm = _hcm(
        stat_prefix,
        route_config_name,
        [
            (LOCAL_RATELIMIT_FILTER, local_rate_limit_pb2.LocalRateLimit(stat_prefix=stat_prefix)),
            (ROUTER_FILTER, router_pb2.Router()),
        ],
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))]
            )
        ],
    )


def api_listener(name: str, route_config_name: str) -> listener_pb2.Listener:
    """A listener for gRPC proxyless clients: an ApiListener wrapping an HCM over RDS/ADS."""
    hcm = _hcm(name, route_config_name, [(ROUTER_FILTER, router_pb2.Router())])
    return listener_pb2.Listener(name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(hcm)))


__all__ = [
    "HCM_FILTER",
    "LOCAL_RATELIMIT_FILTER",
    "PREVIOUS_HOSTS_PREDICATE",
    "PREVIOUS_PRIORITIES",
    "ROUTER_FILTER",
    "LbEndpointSpec",
    "RetrySpec",
    "api_listener",
    "direct_response_route",
    "duration_ms",
    "eds_cluster",
    "load_assignment",
    "local_rate_limit",
    "outbound_listener",
    "pack",
    "retry_policy",
    "route_configuration",
    "simple_route",
    "virtual_host",
    "weighted_route",
]
