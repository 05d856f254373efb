"""Per contract: one EDS cluster per primary provider, and its endpoints (failover at priority 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from meshctl.model import Contract, Provider, Share
from meshctl.translate import builders, sizing

FAILOVER_PRIORITY = 1
_H2_PROTOCOLS = frozenset({"http2", "grpc"})


def cluster_name(contract_id: str, provider_id: str) -> str:
    return f"c.{contract_id}.{provider_id}"


@dataclass(frozen=True)
class PrimaryShare:
    """A primary provider's part of one contract, merged when an allocation names it twice."""

    provider_id: str
    rps: float
    weight: int
    expected_p99_ms: float


def primary_shares(contract: Contract) -> list[PrimaryShare]:
    """Primary shares in allocation order, one per provider (duplicate names would collide)."""
    if contract.allocation is None:
        return []
    merged: dict[str, PrimaryShare] = {}
    for s in contract.allocation.shares:
        prev = merged.get(s.provider_id)
        merged[s.provider_id] = (
            PrimaryShare(s.provider_id, s.rps, s.weight, s.expected_p99_ms)
            if prev is None
            else PrimaryShare(
                s.provider_id,
                prev.rps + s.rps,
                prev.weight + s.weight,
                max(prev.expected_p99_ms, s.expected_p99_ms),
            )
        )
    return list(merged.values())


def referenced_providers(contract: Contract) -> list[str]:
    """Every provider id whose object the contract's clusters and endpoints are built from."""
    if contract.allocation is None:
        return []
    return [s.provider_id for s in (*contract.allocation.shares, *contract.allocation.failover)]


def is_http2(provider: Provider) -> bool:
    """HTTP/2 upstream only when every endpoint speaks it; h2 to an HTTP/1 server fails outright."""
    return all(ep.protocol in _H2_PROTOCOLS for ep in provider.endpoints)


def _endpoints(provider: Provider, priority: int) -> list[builders.LbEndpointSpec]:
    return [
        builders.LbEndpointSpec(
            address=ep.address,
            port=ep.port,
            zone=provider.zone,
            region=provider.region,
            priority=priority,
        )
        for ep in provider.endpoints
    ]


def _failover_endpoints(
    primary: Provider, failover: Sequence[Share], providers: Mapping[str, Provider]
) -> list[builders.LbEndpointSpec]:
    out: list[builders.LbEndpointSpec] = []
    seen = {primary.id}
    for share in failover:
        provider = providers.get(share.provider_id)
        # A failover that vanished, repeats, or speaks another HTTP version than the cluster's
        # upstream codec could only turn a failover into a protocol error.
        if provider is None or provider.id in seen or is_http2(provider) != is_http2(primary):
            continue
        seen.add(provider.id)
        out.extend(_endpoints(provider, FAILOVER_PRIORITY))
    return out


@dataclass(frozen=True)
class ContractClusters:
    """What one contract contributes on the cluster side; `weights` feed the route."""

    clusters: list[cluster_pb2.Cluster]
    load_assignments: list[endpoint_pb2.ClusterLoadAssignment]
    weights: list[tuple[str, int]]


def contract_clusters(contract: Contract, providers: Mapping[str, Provider]) -> ContractClusters:
    """Clusters and endpoints for each live primary provider of `contract`.

    A primary provider missing from `providers` has left the mesh: its cluster is dropped and the
    remaining weights carry the traffic until the contract is re-solved.
    """
    clusters: list[cluster_pb2.Cluster] = []
    assignments: list[endpoint_pb2.ClusterLoadAssignment] = []
    names: list[str] = []
    raw_weights: list[int] = []
    failover = contract.allocation.failover if contract.allocation is not None else []
    for share in primary_shares(contract):
        provider = providers.get(share.provider_id)
        if provider is None:
            continue
        name = cluster_name(contract.id, provider.id)
        cb = sizing.circuit_breakers(share.rps, share.expected_p99_ms)
        clusters.append(
            builders.eds_cluster(
                name,
                max_requests=cb.max_requests,
                max_pending=cb.max_pending,
                max_retries=cb.max_retries,
                http2=is_http2(provider),
            )
        )
        assignments.append(
            builders.load_assignment(
                name, _endpoints(provider, 0) + _failover_endpoints(provider, failover, providers)
            )
        )
        names.append(name)
        raw_weights.append(share.weight)
    weights = list(zip(names, sizing.normalise_weights(raw_weights), strict=True))
    return ContractClusters(clusters, assignments, weights)
