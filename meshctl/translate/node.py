"""A connected proxy's contracts -> the Envoy resources it needs (and nothing more).

`translate_node` composes the cluster side (`clusters.py`) and the route side (`routes.py`) and
returns resources in canonical order (`resources.sort_resources`): the same input always gives
byte-identical protos, so snapshot versions hashed from them are stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from meshctl.model import LIVE_STATES, Contract, Provider
from meshctl.translate import builders, resources
from meshctl.translate.clusters import (
    cluster_name,
    contract_clusters,
    primary_shares,
    referenced_providers,
)
from meshctl.translate.memo import TranslationMemo
from meshctl.translate.routes import capability_virtual_host

OUTBOUND = "outbound"
DEFAULT_LISTENER_PORT = 15001


@dataclass(frozen=True)
class NodeView:
    """What translation needs to know of a connected proxy."""

    node_id: str
    service: str  # Envoy node.cluster; the consumer name in contracts
    zone: str = ""
    region: str = ""
    listener_port: int = DEFAULT_LISTENER_PORT  # node metadata "listener_port"
    proxyless: bool = False  # gRPC proxyless client (node metadata "proxyless": true)

    @classmethod
    def from_node(cls, node: base_pb2.Node) -> NodeView:
        """Read a NodeView from the `node` of a DiscoveryRequest.

        Metadata may arrive as numbers or strings (bootstrap YAML quoting varies); anything
        unreadable falls back to the default rather than refusing the proxy.
        """
        fields = node.metadata.fields
        return cls(
            node_id=node.id,
            service=node.cluster,
            zone=node.locality.zone,
            region=node.locality.region,
            listener_port=_port(fields.get("listener_port")),
            proxyless=_flag(fields.get("proxyless")),
        )


def _port(value: struct_pb2.Value | None) -> int:
    if value is None:
        return DEFAULT_LISTENER_PORT
    kind = value.WhichOneof("kind")
    raw: object = value.number_value if kind == "number_value" else value.string_value
    try:
        port = int(float(raw))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_LISTENER_PORT
    return port if 1 <= port <= 65535 else DEFAULT_LISTENER_PORT


def _flag(value: struct_pb2.Value | None) -> bool:
    if value is None:
        return False
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "string_value":
        return value.string_value.strip().lower() in {"true", "1", "yes"}
    if kind == "number_value":
        return value.number_value != 0
    return False


def is_translated(contract: Contract) -> bool:
    """Only live contracts with an allocation become Envoy config."""
    return contract.state in LIVE_STATES and contract.allocation is not None


def node_contracts(node: NodeView, contracts: Sequence[Contract]) -> list[Contract]:
    """The contracts `node` consumes, in a stable order (others are never sent to it)."""
    mine = [c for c in contracts if is_translated(c) and c.request.consumer == node.service]
    return sorted(mine, key=lambda c: (c.request.capability, c.created_at, c.id))


def proxyless_route_config_name(capability: str) -> str:
    return f"rc.{capability}"


def translate_node(
    node: NodeView,
    contracts: Sequence[Contract],
    providers: Mapping[str, Provider],
    memo: TranslationMemo | None = None,
) -> list[Message]:
    """Listeners, route configurations, clusters and endpoints for `node`, canonically ordered.

    A sidecar always gets listener `outbound` (127.0.0.1:listener_port) and route configuration
    `outbound` (one virtual host per capability). A proxyless gRPC client instead gets, per
    capability, an ApiListener named after the capability over route configuration
    `rc.<capability>`; it has no socket to bind, so it gets no `outbound` listener.
    `memo` (optional) reuses per-contract output built earlier from the same objects.
    """
    out: list[Message] = []
    by_capability: dict[str, list[tuple[Contract, list[tuple[str, int]]]]] = {}
    for contract in node_contracts(node, contracts):
        if memo is None:
            cc = contract_clusters(contract, providers)
        else:
            used = tuple(providers.get(pid) for pid in referenced_providers(contract))
            cc = memo.get(
                "clusters", (contract, *used), None, partial(contract_clusters, contract, providers)
            )
        out.extend(cc.clusters)
        out.extend(cc.load_assignments)
        by_capability.setdefault(contract.request.capability, []).append((contract, cc.weights))

    if node.proxyless:
        for capability, items in sorted(by_capability.items()):
            rc_name = proxyless_route_config_name(capability)
            out.append(builders.api_listener(capability, rc_name))
            vh = capability_virtual_host(capability, items, proxyless=True, memo=memo)
            out.append(builders.route_configuration(rc_name, [vh]))
    else:
        out.append(builders.outbound_listener(OUTBOUND, node.listener_port, OUTBOUND))
        vhosts = [
            capability_virtual_host(cap, items, proxyless=False, memo=memo)
            for cap, items in sorted(by_capability.items())
        ]
        out.append(builders.route_configuration(OUTBOUND, vhosts))
    return resources.sort_resources(out)


def contract_resource_names(contract: Contract, *, proxyless: bool = False) -> dict[str, list[str]]:
    """type_url -> names of the resources that carry `contract` on its consumer's proxies.

    Listed from the allocation alone (a primary provider that has since vanished still appears);
    empty lists when the contract is not translated at all. `proxyless` picks the gRPC naming.
    """
    names: dict[str, list[str]] = {t: [] for t in resources.TYPE_ORDER}
    if not is_translated(contract):
        return names
    clusters = sorted(cluster_name(contract.id, s.provider_id) for s in primary_shares(contract))
    capability = contract.request.capability
    names[resources.CLUSTER_TYPE] = clusters
    names[resources.ENDPOINT_TYPE] = list(clusters)
    if proxyless:
        names[resources.LISTENER_TYPE] = [capability]
        names[resources.ROUTE_TYPE] = [proxyless_route_config_name(capability)]
    else:
        names[resources.LISTENER_TYPE] = [OUTBOUND]
        names[resources.ROUTE_TYPE] = [OUTBOUND]
    return names
