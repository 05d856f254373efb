"""The numbers a contract turns into: weights, deadlines, rate limits, circuit breakers, priorities."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from google.protobuf.message import Message
from translate_scenarios import mesh_providers, weighted_contract

from meshctl.model import Contract, ContractState
from meshctl.translate import NodeView, sizing, translate_node
from meshctl.translate.builders import LOCAL_RATELIMIT_FILTER

FRONTEND = NodeView("frontend-1", "frontend")
T = TypeVar("T", bound=Message)


def _of(resources: list[Message], kind: type[T]) -> dict[str, T]:
    out: dict[str, T] = {}
    for m in resources:
        if isinstance(m, kind):
            key = m.cluster_name if isinstance(m, endpoint_pb2.ClusterLoadAssignment) else m.name  # type: ignore[attr-defined]
            out[key] = m
    return out


def _routes(resources: list[Message], capability: str) -> list[route_components_pb2.Route]:
    rc = _of(resources, route_pb2.RouteConfiguration)["outbound"]
    vhosts = {vh.name: vh for vh in rc.virtual_hosts}
    return list(vhosts[capability].routes)


def _bucket(route: route_components_pb2.Route) -> local_rate_limit_pb2.LocalRateLimit:
    cfg = local_rate_limit_pb2.LocalRateLimit()
    assert route.typed_per_filter_config[LOCAL_RATELIMIT_FILTER].Unpack(cfg)
    return cfg


def test_route_weights_follow_the_allocation_shares() -> None:
    res = translate_node(FRONTEND, [weighted_contract()], mesh_providers())
    (default_route,) = _routes(res, "graph-analysis")  # a lone contract needs no header route
    for route in (default_route,):
        split = [(w.name, w.weight.value) for w in route.route.weighted_clusters.clusters]
        assert split == [("c.ct-graph.p-a", 50), ("c.ct-graph.p-b", 30), ("c.ct-graph.p-c", 20)]


def test_deadlines_scale_with_the_sla_p99() -> None:
    res = translate_node(FRONTEND, [weighted_contract()], mesh_providers())  # p99 80 ms
    route = _routes(res, "graph-analysis")[0].route
    assert route.timeout.ToMilliseconds() == 320
    assert route.retry_policy.per_try_timeout.ToMilliseconds() == 160
    assert route.retry_policy.num_retries.value == 2
    assert route.retry_policy.retry_on == "5xx,reset,connect-failure,refused-stream"
    assert route.retry_policy.host_selection_retry_max_attempts == 3
    assert [p.name for p in route.retry_policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]


@pytest.mark.parametrize(
    ("p99", "timeout", "per_try"),
    [(80, 320, 160), (10, 100, 50), (25, 100, 50), (30, 120, 60), (12.5, 100, 50), (100.1, 401, 201)],
)
def test_deadline_floors(p99: float, timeout: int, per_try: int) -> None:
    assert sizing.route_timeout_ms(p99) == timeout
    assert sizing.per_try_timeout_ms(p99) == per_try


def test_rate_limit_bucket_holds_the_contracted_rps(
    make_contract: Callable[..., Contract], make_share
) -> None:
    c = make_contract("ct-r", rps=10.5, shares=[make_share("p-a", "eu-west-1a", 10.5, 100, 5)])
    route = _routes(translate_node(FRONTEND, [c], mesh_providers()), "graph-analysis")[0]
    bucket = _bucket(route)
    assert bucket.token_bucket.max_tokens == 11
    assert bucket.token_bucket.tokens_per_fill.value == 11
    assert bucket.token_bucket.fill_interval.ToMilliseconds() == 1000
    assert bucket.filter_enabled.default_value.numerator == 100
    assert bucket.filter_enforced.default_value.numerator == 100
    assert bucket.filter_enforced.runtime_key.startswith("meshctl_ratelimit.")
    assert [(h.header.key, h.header.value) for h in bucket.response_headers_to_add] == [
        ("x-mesh-ratelimited", "true")
    ]
    assert bucket.status.code == 429


def test_degraded_contract_is_limited_to_what_was_reserved(make_contract, make_share) -> None:
    c = make_contract(
        "ct-d",
        rps=100,
        alloc_rps=60,
        state=ContractState.DEGRADED,
        shares=[make_share("p-a", "eu-west-1a", 60, 100, 40)],
    )
    route = _routes(translate_node(FRONTEND, [c], mesh_providers()), "graph-analysis")[0]
    assert _bucket(route).token_bucket.max_tokens == 60


def test_fractional_rps_still_gets_a_token(make_contract, make_share) -> None:
    c = make_contract("ct-f", rps=0.2, shares=[make_share("p-a", "eu-west-1a", 0.2, 100, 5)])
    route = _routes(translate_node(FRONTEND, [c], mesh_providers()), "graph-analysis")[0]
    assert _bucket(route).token_bucket.max_tokens == 1


def test_circuit_breakers_sized_by_littles_law() -> None:
    # p-a: 750 rps x 40 ms = 30 in flight -> 60; p-b: 450 x 45 ms = 20.25 -> 41; p-c: 300 x 70 ms = 21 -> 42.
    clusters = _of(translate_node(FRONTEND, [weighted_contract()], mesh_providers()), cluster_pb2.Cluster)
    sizes = {
        name: (t.max_requests.value, t.max_pending_requests.value, t.max_retries.value)
        for name, c in clusters.items()
        for t in c.circuit_breakers.thresholds
    }
    assert sizes == {
        "c.ct-graph.p-a": (60, 60, 12),
        "c.ct-graph.p-b": (41, 41, 9),
        "c.ct-graph.p-c": (42, 42, 9),
    }


@pytest.mark.parametrize(
    ("rps", "p99", "expected"),
    [
        (1, 10, (16, 16, 4)),
        (0, 0, (16, 16, 4)),
        (100, 35, (16, 16, 4)),
        (100, 50, (16, 16, 4)),
        (1000, 100, (200, 200, 40)),
    ],
)
def test_circuit_breaker_floors(rps: float, p99: float, expected: tuple[int, int, int]) -> None:
    cb = sizing.circuit_breakers(rps, p99)
    assert (cb.max_requests, cb.max_pending, cb.max_retries) == expected


def test_circuit_breaker_ceil_is_not_fooled_by_float_noise() -> None:
    # 0.2 x 70 is 14.000000000000002 in floating point and 4 x 70.00000000000001 a hair over 280:
    # a bare ceil would hand out one more retry and one more millisecond than the rule says.
    cb = sizing.circuit_breakers(350, 100)
    assert (cb.max_requests, cb.max_retries) == (70, 14)
    assert sizing.route_timeout_ms(0.07 * 1000) == 280


def test_failover_endpoints_sit_at_priority_one_with_their_own_locality() -> None:
    clas = _of(
        translate_node(FRONTEND, [weighted_contract()], mesh_providers()), endpoint_pb2.ClusterLoadAssignment
    )
    assert sorted(clas) == ["c.ct-graph.p-a", "c.ct-graph.p-b", "c.ct-graph.p-c"]
    cla = clas["c.ct-graph.p-b"]
    groups = [
        (
            g.priority,
            g.locality.region,
            g.locality.zone,
            [e.endpoint.address.socket_address.address for e in g.lb_endpoints],
        )
        for g in cla.endpoints
    ]
    assert groups == [
        (0, "eu-west", "eu-west-1b", ["127.0.0.12", "127.0.0.13"]),
        (1, "us-east", "us-east-1a", ["127.0.0.15"]),
    ]
    # gRPC clients drop localities without a weight.
    assert all(g.load_balancing_weight.value > 0 for g in cla.endpoints)


def test_http2_clusters_for_grpc_providers(make_contract, make_share) -> None:
    c = make_contract("ct-g", capability="grpc-echo", shares=[make_share("p-grpc", "eu-west-1a", 10, 100, 5)])
    plain = make_contract("ct-h", shares=[make_share("p-a", "eu-west-1a", 10, 100, 5)])
    clusters = _of(translate_node(FRONTEND, [c, plain], mesh_providers()), cluster_pb2.Cluster)
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    assert key in clusters["c.ct-g.p-grpc"].typed_extension_protocol_options
    assert key not in clusters["c.ct-h.p-a"].typed_extension_protocol_options


def test_outlier_detection_ejects_on_consecutive_5xx() -> None:
    cluster = _of(translate_node(FRONTEND, [weighted_contract()], mesh_providers()), cluster_pb2.Cluster)[
        "c.ct-graph.p-a"
    ]
    od = cluster.outlier_detection
    assert (
        od.consecutive_5xx.value,
        od.interval.ToMilliseconds(),
        od.base_ejection_time.ToMilliseconds(),
    ) == (
        3,
        1000,
        5000,
    )
    assert od.max_ejection_percent.value == 100
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert cluster.type == cluster_pb2.Cluster.EDS


def test_retries_move_to_the_failover_priority_only_when_there_is_one(make_contract, make_share) -> None:
    with_failover = _routes(
        translate_node(FRONTEND, [weighted_contract()], mesh_providers()), "graph-analysis"
    )
    policy = with_failover[0].route.retry_policy
    assert policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
    cfg = previous_priorities_config_pb2.PreviousPrioritiesConfig()
    assert policy.retry_priority.typed_config.Unpack(cfg)
    assert cfg.update_frequency == 2  # two tries at the primary, the last retry at priority 1
    plain = make_contract("ct-p", shares=[make_share("p-a", "eu-west-1a", 10, 100, 5)])
    route = _routes(translate_node(FRONTEND, [plain], mesh_providers()), "graph-analysis")[0]
    assert not route.route.retry_policy.HasField("retry_priority")
