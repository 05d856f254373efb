"""Bootstraps meshctl hands to Envoy and gRPC clients; the real Envoy binary validates them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from meshctl.bootstrap import bootstrap_yaml, envoy_bootstrap, grpc_xds_bootstrap
from meshctl.errors import ValidationFailed


def test_node_identifies_service_zone_and_listener_port() -> None:
    boot = envoy_bootstrap("n1", "checkout", "eu-west-1a", region="eu-west", listener_port=16001)
    assert boot["node"] == {
        "id": "n1",
        "cluster": "checkout",
        "locality": {"zone": "eu-west-1a", "region": "eu-west"},
        "metadata": {"listener_port": 16001},
    }


@pytest.mark.parametrize(("ads", "api_type"), [("sotw", "GRPC"), ("delta", "DELTA_GRPC")])
def test_ads_mode_selects_api_type(ads: str, api_type: str) -> None:
    dyn = envoy_bootstrap("n1", "s", "z", ads=ads)["dynamic_resources"]  # type: ignore[arg-type]
    assert dyn["ads_config"]["api_type"] == api_type
    assert dyn["ads_config"]["transport_api_version"] == "V3"
    assert dyn["lds_config"] == {"ads": {}, "resource_api_version": "V3"}
    assert dyn["cds_config"] == {"ads": {}, "resource_api_version": "V3"}


def test_xds_cluster_points_at_server_over_http2() -> None:
    boot = envoy_bootstrap("n1", "s", "z", xds_host="127.0.0.2", xds_port=19999, admin_port=19001)
    (cluster,) = boot["static_resources"]["clusters"]
    sock = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert sock["socket_address"] == {"address": "127.0.0.2", "port_value": 19999}
    opts = cluster["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(opts.values()))["explicit_http_config"]
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19001}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ads": "rest"}, "ads"),
        ({"xds_port": 0}, "xds_port"),
        ({"admin_port": 70000}, "admin_port"),
        ({"listener_port": -1}, "listener_port"),
    ],
)
def test_invalid_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        envoy_bootstrap("n1", "s", "z", **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_empty_node_id_rejected() -> None:
    with pytest.raises(ValidationFailed):
        envoy_bootstrap("", "s", "z")


def test_yaml_round_trips() -> None:
    text = bootstrap_yaml("n1", "s", "z", ads="delta", xds_port=18123)
    assert yaml.safe_load(text) == envoy_bootstrap("n1", "s", "z", ads="delta", xds_port=18123)


def test_grpc_bootstrap_shape() -> None:
    boot = grpc_xds_bootstrap("g1", "client", "zone-b", "127.0.0.1", 18111)
    assert boot["xds_servers"] == [
        {
            "server_uri": "127.0.0.1:18111",
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"],
        }
    ]
    assert boot["node"]["id"] == "g1"
    assert boot["node"]["cluster"] == "client"
    assert boot["node"]["locality"] == {"zone": "zone-b"}
    json.dumps(boot)  # the file grpc reads is JSON


@pytest.mark.parametrize("ads", ["sotw", "delta"])
def test_real_envoy_validates_bootstrap(ads: str, envoy_bin: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bootstrap.yaml"
    cfg.write_text(bootstrap_yaml("n1", "s", "z", region="r", ads=ads))  # type: ignore[arg-type]
    proc = subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", str(cfg), "--disable-hot-restart", "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout + proc.stderr


def test_real_envoy_rejects_a_broken_bootstrap(envoy_bin: str, tmp_path: Path) -> None:
    # Guards the test above: validate mode must be able to fail.
    boot = envoy_bootstrap("n1", "s", "z")
    boot["dynamic_resources"]["ads_config"]["api_type"] = "NOT_AN_API"
    cfg = tmp_path / "bootstrap.yaml"
    cfg.write_text(yaml.safe_dump(boot))
    proc = subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", str(cfg), "--disable-hot-restart", "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0


def test_a_dns_named_control_plane_is_resolved_and_validates(envoy_bin: str, tmp_path: Path) -> None:
    # In Kubernetes the xDS address is a Service name; STATIC clusters accept only IPs.
    text = bootstrap_yaml("fd-1", "fraud-detection", "eu-west-1a", xds_host="meshctl-xds.mesh.svc", xds_port=18000)
    doc = yaml.safe_load(text)
    assert doc["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    assert "&id" not in text and "*id" not in text  # printed in full, no YAML anchors
    path = tmp_path / "dns.yaml"
    path.write_text(text)
    done = subprocess.run([envoy_bin, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_xds_reconnect_backoff_is_capped_at_one_second() -> None:
    grpc = envoy_bootstrap("n", "s", "z")["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]
    assert grpc["retry_policy"]["retry_back_off"]["max_interval"] == "1s"
    assert envoy_bootstrap("n", "s", "z", xds_host="127.0.0.1")["static_resources"]["clusters"][0]["type"] == "STATIC"
