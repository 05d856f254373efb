"""Translated routes carry real traffic through a real Envoy as the contract promises.

xDS delivery is not under test here (that is meshctl.xds's job): the translated resources are
made static (EDS clusters get their ClusterLoadAssignment inline, the RDS listener gets its
RouteConfiguration inline) and everything else is served exactly as translated.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from translate_scenarios import contract, envoy_binary, provider, share

from meshctl.model import Contract, Provider
from meshctl.translate import NodeView, translate_node

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, each reply waits for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path.startswith("/sleep/"):
            time.sleep(int(self.path.rsplit("/", 1)[-1]) / 1000)
        body = json.dumps(
            {"backend": self.server.name, "contract": self.headers.get("x-mesh-contract")}  # type: ignore[attr-defined]
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    """Four named HTTP backends on loopback; name -> port."""
    servers = []
    for name in ("a", "b", "c", "d"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
        srv.name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
    try:
        yield {s.name: s.server_address[1] for s in servers}  # type: ignore[attr-defined]
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def _make_static(resources: list[Message], admin_port: int) -> bootstrap_pb2.Bootstrap:
    clas = {m.cluster_name: m for m in resources if isinstance(m, endpoint_pb2.ClusterLoadAssignment)}
    rcs = {m.name: m for m in resources if isinstance(m, route_pb2.RouteConfiguration)}
    bs = bootstrap_pb2.Bootstrap(node=base_pb2.Node(id="live", cluster="frontend"))
    bs.admin.address.CopyFrom(
        address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=admin_port)
        )
    )
    for m in resources:
        if isinstance(m, cluster_pb2.Cluster):
            c = cluster_pb2.Cluster()
            c.CopyFrom(m)
            c.type = cluster_pb2.Cluster.STATIC
            c.ClearField("eds_cluster_config")
            c.load_assignment.CopyFrom(clas[m.name])
            bs.static_resources.clusters.append(c)
        elif isinstance(m, listener_pb2.Listener):
            lst = listener_pb2.Listener()
            lst.CopyFrom(m)
            hcm = http_connection_manager_pb2.HttpConnectionManager()
            assert lst.filter_chains[0].filters[0].typed_config.Unpack(hcm)
            hcm.route_config.CopyFrom(rcs[hcm.rds.route_config_name])
            lst.filter_chains[0].filters[0].typed_config.Pack(hcm)
            bs.static_resources.listeners.append(lst)
    return bs


@pytest.fixture
def run_envoy(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[bytes]] = []

    def start(resources: list[Message]) -> None:
        admin = free_port()
        config = tmp_path / "bootstrap.json"
        config.write_text(json_format.MessageToJson(_make_static(resources, admin)))
        log = open(tmp_path / "envoy.log", "wb")
        proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--disable-hot-restart",
                "-l",
                "warning",
                "--concurrency",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"envoy exited: {(tmp_path / 'envoy.log').read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail("envoy did not become ready")

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _get(
    port: int, host: str, headers: dict[str, str] | None = None, path: str = "/"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers={"Host": host, **(headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def _providers(backends: dict[str, int]) -> dict[str, Provider]:
    return {
        f"p-{n}": provider(f"p-{n}", f"z-{n}", "r", [("127.0.0.1", port)], capabilities=("cap",))
        for n, port in backends.items()
    }


def test_weighted_split_header_routing_and_contract_header(backends: dict[str, int], run_envoy) -> None:
    port = free_port()
    weighted = contract(
        "ct-w",
        capability="split",
        rps=5000,
        created_at=1.0,
        shares=[
            share("p-a", "z-a", 2500, 50, 5),
            share("p-b", "z-b", 1500, 30, 5),
            share("p-c", "z-c", 1000, 20, 5),
        ],
    )
    old = contract(
        "ct-old", capability="pick", rps=5000, created_at=1.0, shares=[share("p-a", "z-a", 5000, 100, 5)]
    )
    new = contract(
        "ct-new", capability="pick", rps=5000, created_at=2.0, shares=[share("p-d", "z-d", 5000, 100, 5)]
    )
    contracts: list[Contract] = [weighted, old, new]
    run_envoy(translate_node(NodeView("n", "frontend", listener_port=port), contracts, _providers(backends)))

    seen: Counter[str] = Counter()
    for _ in range(400):
        status, _, body = _get(port, "split")
        assert status == 200
        reply = json.loads(body)
        assert reply["contract"] == "ct-w"
        seen[reply["backend"]] += 1
    # Weighted clusters pick randomly per request: 50/30/20 of 400 with a wide margin.
    assert 150 <= seen["a"] <= 250 and 80 <= seen["b"] <= 160 and 40 <= seen["c"] <= 120, seen

    assert json.loads(_get(port, "pick:15001", {"x-mesh-contract": "ct-new"})[2]) == {
        "backend": "d",
        "contract": "ct-new",
    }
    # No header: the oldest contract for the capability; a forged header is overwritten.
    assert json.loads(_get(port, "pick")[2]) == {"backend": "a", "contract": "ct-old"}
    assert json.loads(_get(port, "pick", {"x-mesh-contract": "ct-bogus"})[2]) == {
        "backend": "a",
        "contract": "ct-old",
    }
    assert _get(port, "unknown-capability")[0] == 404


def test_requests_beyond_the_contracted_rps_get_429(backends: dict[str, int], run_envoy) -> None:
    port = free_port()
    limited = contract("ct-rl", capability="cap", rps=5, shares=[share("p-a", "z-a", 5, 100, 5)])
    run_envoy(translate_node(NodeView("n", "frontend", listener_port=port), [limited], _providers(backends)))

    statuses = []
    limited_headers = []
    for _ in range(20):
        status, headers, _ = _get(port, "cap")
        statuses.append(status)
        if status == 429:
            limited_headers.append(headers.get("x-mesh-ratelimited"))
    ok = statuses.count(200)
    # A bucket of 5 tokens refilled once a second; the burst takes well under a second.
    assert 5 <= ok <= 10, statuses
    assert statuses.count(429) == 20 - ok
    assert limited_headers and set(limited_headers) == {"true"}


def test_a_dead_primary_fails_over_to_the_priority_one_provider(backends: dict[str, int], run_envoy) -> None:
    port = free_port()
    providers = _providers(backends)
    # Nobody listens on the primary's port. The last retry of the very first request already
    # goes to priority 1, and once outlier detection ejects the primary every first try does.
    providers["p-dead"] = provider("p-dead", "z-x", "r", [("127.0.0.1", free_port())], capabilities=("cap",))
    c = contract(
        "ct-fo",
        capability="cap",
        rps=1000,
        shares=[share("p-dead", "z-x", 1000, 100, 5)],
        failover=[share("p-b", "z-b", 0, 0, 5, priority=1)],
    )
    run_envoy(translate_node(NodeView("n", "frontend", listener_port=port), [c], providers))
    replies = [_get(port, "cap") for _ in range(10)]
    assert [status for status, _, _ in replies] == [200] * 10
    assert {json.loads(body)["backend"] for _, _, body in replies} == {"b"}


def test_a_provider_slower_than_the_sla_deadline_gets_cut_off(backends: dict[str, int], run_envoy) -> None:
    port = free_port()
    # p99 25 ms: 50 ms per try, 100 ms for the whole request.
    c = contract("ct-slow", capability="cap", p99=25, rps=1000, shares=[share("p-a", "z-a", 1000, 100, 5)])
    run_envoy(translate_node(NodeView("n", "frontend", listener_port=port), [c], _providers(backends)))
    assert _get(port, "cap", path="/sleep/10")[0] == 200
    started = time.monotonic()
    status, _, body = _get(port, "cap", path="/sleep/400")
    elapsed = time.monotonic() - started
    assert status == 504, body
    assert elapsed < 0.35, elapsed
