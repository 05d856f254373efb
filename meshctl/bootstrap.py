"""Bootstrap documents for the proxies that connect to meshctl's xDS server (pure functions).

Two consumers read these: Envoy (`envoy -c bootstrap.yaml`) and grpcio's proxyless xDS client
(the JSON file named by ``GRPC_XDS_BOOTSTRAP``). Both identify themselves with the same node
shape, because the control plane keys snapshots and proxy status on ``node.id`` and learns the
consumer service (``node.cluster``) and zone (``node.locality.zone``) from it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

import yaml

from meshctl.errors import ValidationFailed

AdsMode = Literal["sotw", "delta"]

XDS_CLUSTER = "xds_cluster"
DEFAULT_LISTENER_PORT = 15001

_API_TYPES: dict[str, str] = {"sotw": "GRPC", "delta": "DELTA_GRPC"}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_port(field: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ValidationFailed(f"{field} must be a TCP port (1-65535), got {port}", field=field)


def _node(node_id: str, service: str, zone: str, region: str, listener_port: int) -> dict[str, Any]:
    if not node_id:
        raise ValidationFailed("node id must not be empty", field="node_id")
    if not service:
        raise ValidationFailed("service must not be empty", field="service")
    locality: dict[str, str] = {"zone": zone}
    if region:
        locality["region"] = region
    return {
        "id": node_id,
        "cluster": service,
        "locality": locality,
        # The translator reads the outbound listener port from here, so each sidecar can pick
        # a port that does not clash with its application.
        "metadata": {"listener_port": listener_port},
    }


def envoy_bootstrap(
    node_id: str,
    service: str,
    zone: str,
    region: str = "",
    xds_host: str = "127.0.0.1",
    xds_port: int = 18000,
    admin_port: int = 15000,
    ads: AdsMode = "sotw",
    listener_port: int = DEFAULT_LISTENER_PORT,
) -> dict[str, Any]:
    """An Envoy v3 bootstrap that takes every listener and cluster from meshctl over ADS."""
    if ads not in _API_TYPES:
        raise ValidationFailed(f"ads must be 'sotw' or 'delta', got {ads!r}", field="ads")
    _check_port("xds_port", xds_port)
    _check_port("admin_port", admin_port)
    _check_port("listener_port", listener_port)
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": _node(node_id, service, zone, region, listener_port),
        "dynamic_resources": {
            "ads_config": {
                "api_type": _API_TYPES[ads],
                "transport_api_version": "V3",
                # The server keys state on the stream, so repeating the node on every
                # request is wasted bytes on 10k-resource pushes.
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # Envoy's default reconnect backoff grows to 30 s: a sidecar would stay
                            # on stale config that long after the control plane returns. Cap it at 1 s.
                            "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}},
                        }
                    }
                ],
            },
            "lds_config": dict(ads_source),
            "cds_config": dict(ads_source),
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    # STATIC needs an IP; a DNS name (a Kubernetes Service) is resolved and
                    # re-resolved by Envoy, so replicas behind it can come and go.
                    "type": "STATIC" if _is_ip(xds_host) else "STRICT_DNS",
                    "connect_timeout": "1s",
                    # gRPC needs HTTP/2 to the management server.
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}},
        },
    }


class _NoAliases(yaml.SafeDumper):
    """Shared sub-dicts (the ADS config source) must print in full: anchors confuse readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def bootstrap_yaml(
    node_id: str,
    service: str,
    zone: str,
    region: str = "",
    xds_host: str = "127.0.0.1",
    xds_port: int = 18000,
    admin_port: int = 15000,
    ads: AdsMode = "sotw",
    listener_port: int = DEFAULT_LISTENER_PORT,
) -> str:
    """`envoy_bootstrap` as YAML, ready for ``envoy -c``."""
    doc = envoy_bootstrap(
        node_id,
        service,
        zone,
        region=region,
        xds_host=xds_host,
        xds_port=xds_port,
        admin_port=admin_port,
        ads=ads,
        listener_port=listener_port,
    )
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False)


def grpc_xds_bootstrap(
    node_id: str,
    service: str,
    zone: str,
    xds_host: str = "127.0.0.1",
    xds_port: int = 18000,
    region: str = "",
) -> dict[str, Any]:
    """The JSON grpcio's xDS client reads from the file named by ``GRPC_XDS_BOOTSTRAP``."""
    _check_port("xds_port", xds_port)
    node = _node(node_id, service, zone, region, DEFAULT_LISTENER_PORT)
    # A proxyless client has no listening port; the flag tells the translator to send it
    # ApiListeners instead of a socket listener.
    node["metadata"] = {"proxyless": True}
    return {
        "xds_servers": [
            {
                "server_uri": f"{xds_host}:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": node,
    }
