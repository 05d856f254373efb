"""Pure translation: a node's contracts -> Envoy Listener / RouteConfiguration / Cluster / CLA.

Nothing here does I/O or knows about xDS streams; `meshctl.xds` serves what this produces.
"""

from meshctl.translate.builders import LbEndpointSpec
from meshctl.translate.node import (
    OUTBOUND,
    NodeView,
    contract_resource_names,
    node_contracts,
    translate_node,
)
from meshctl.translate.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    TYPE_ORDER,
    check_consistent,
    resource_name,
    sort_resources,
    to_dicts,
    to_json,
    type_url,
)

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "OUTBOUND",
    "ROUTE_TYPE",
    "TYPE_ORDER",
    "LbEndpointSpec",
    "NodeView",
    "check_consistent",
    "contract_resource_names",
    "node_contracts",
    "resource_name",
    "sort_resources",
    "to_dicts",
    "to_json",
    "translate_node",
    "type_url",
]
