"""Per capability: one virtual host; per contract: a header-selected route; plus a default route."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.route.v3 import route_components_pb2

from meshctl.model import Contract
from meshctl.translate import builders, sizing
from meshctl.translate.memo import TranslationMemo

CONTRACT_HEADER = "x-mesh-contract"
RATELIMITED_HEADER = "x-mesh-ratelimited"
RATELIMIT_RUNTIME_PREFIX = "meshctl_ratelimit"
SIDECAR_RETRY_ON = "5xx,reset,connect-failure,refused-stream"
# gRPC proxyless clients act only on gRPC status names here and ignore the rest (gRFC A44).
PROXYLESS_RETRY_ON = "unavailable"
NO_PROVIDER_STATUS = 503


def domains(capability: str) -> list[str]:
    # The app calls its sidecar with Host: <capability>, possibly with the sidecar's port appended.
    return [capability, f"{capability}:*"]


def contract_rps(contract: Contract) -> float:
    """The rate the bucket admits: what was actually reserved, never more than contracted.

    A degraded contract holds less than its SLA asks; limiting at the SLA would let it push its
    providers past the capacity held for it and eat into other contracts.
    """
    sla_rps = contract.request.sla.rps
    alloc = contract.allocation
    if alloc is None or alloc.rps <= 0:
        return sla_rps
    return min(sla_rps, alloc.rps)


def _failover_after(contract: Contract, proxyless: bool) -> int | None:
    """Attempts at the primary priority before a retry goes to the failover endpoints.

    Without it a retry keeps picking the dead primary until outlier detection ejects it, so the
    first requests of an outage fail; with it the last retry already reaches priority 1.
    Proxyless gRPC has no retry priorities; a contract without failover has nowhere to go.
    """
    if proxyless or contract.allocation is None or not contract.allocation.failover:
        return None
    return 2


def contract_route(
    contract: Contract,
    weights: Sequence[tuple[str, int]],
    *,
    default: bool,
    proxyless: bool,
) -> route_components_pb2.Route:
    """The route carrying `contract`: selected by header, or (default=True) by nothing at all."""
    header = None if default else {CONTRACT_HEADER: contract.id}
    name = f"{'default' if default else 'contract'}:{contract.id}"
    if not weights:
        # Every primary provider left; answer plainly rather than send an unroutable route.
        return builders.direct_response_route(
            NO_PROVIDER_STATUS,
            f"contract {contract.id}: no live provider\n",
            name=name,
            header_matches=header,
        )
    p99 = contract.request.sla.p99_latency_ms
    timeout = sizing.route_timeout_ms(p99)
    retry = builders.RetrySpec(
        retry_on=PROXYLESS_RETRY_ON if proxyless else SIDECAR_RETRY_ON,
        num_retries=2,
        per_try_timeout_ms=sizing.per_try_timeout_ms(p99),
        previous_hosts=True,
        host_selection_retry_max_attempts=3,
        previous_priorities_update_frequency=_failover_after(contract, proxyless),
    )
    per_filter = None
    if not proxyless:
        tokens = sizing.rate_limit_tokens(contract_rps(contract))
        per_filter = {
            builders.LOCAL_RATELIMIT_FILTER: builders.local_rate_limit(
                f"contract.{contract.id}",
                max_tokens=tokens,
                tokens_per_fill=tokens,
                fill_interval_ms=1000,
                runtime_prefix=RATELIMIT_RUNTIME_PREFIX,
                limited_header=(RATELIMITED_HEADER, "true"),
            )
        }
    return builders.weighted_route(
        weights,
        name=name,
        prefix="/",
        header_matches=header,
        timeout_ms=timeout,
        retry=retry,
        request_headers={CONTRACT_HEADER: contract.id},
        per_filter_config=per_filter,
        # No max_stream_duration for gRPC clients: grpcio 1.85's xDS client fails every call with
        # DEADLINE_EXCEEDED when it is set (seen at 160 ms, 400 ms and 1 s, against an upstream
        # answering in under 2 ms), so their own call deadlines apply; per-try timeouts still do.
        max_stream_duration_ms=None,
    )


def capability_virtual_host(
    capability: str,
    contracts: Sequence[tuple[Contract, Sequence[tuple[str, int]]]],
    *,
    proxyless: bool,
    memo: TranslationMemo | None = None,
) -> route_components_pb2.VirtualHost:
    """Header routes for the newer contracts, then the oldest contract as the header-less default.

    Envoy takes the first matching route, so the default must come last. The oldest contract has
    no header route of its own: requests naming it fall through to the default, so each contract
    has exactly one route and therefore one rate-limit bucket (two routes would allow 2 x rps).
    """
    ordered = sorted(contracts, key=lambda cw: (cw[0].created_at, cw[0].id))

    def route(c: Contract, w: Sequence[tuple[str, int]], default: bool) -> route_components_pb2.Route:
        if memo is None:
            return contract_route(c, w, default=default, proxyless=proxyless)
        return memo.get(
            "route", (c,), (tuple(w), default, proxyless),
            lambda: contract_route(c, w, default=default, proxyless=proxyless),
        )  # fmt: skip

    routes = [route(c, w, False) for c, w in ordered[1:]]
    if ordered:
        oldest, weights = ordered[0]
        routes.append(route(oldest, weights, True))
    return builders.virtual_host(capability, domains(capability), routes)
