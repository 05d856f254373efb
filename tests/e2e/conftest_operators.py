"""Operator-side e2e support: a real `meshctl serve` subprocess on free loopback ports, and the CLI
driven in-process (typer's CliRunner) against it. Imported explicitly by test_cli.py and
test_ui_browser.py (the e2e conftest.py belongs to the contract tests).

The server is stopped by its PID (SIGTERM, then SIGKILL) whatever happens in the test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from harness import free_port
from typer.testing import CliRunner

from meshctl.cli import app
from meshctl.xds import resources as xds_resources

REPO = Path(__file__).resolve().parents[2]
MESHCTL = Path(sys.executable).with_name("meshctl")
TOPOLOGY = REPO / "deploy" / "topology.yaml"

OPERATOR_TOKEN = "ops-operator-token"
AGENT_TOKEN = "ops-agent-token"
TOKENS_ENV = f"{OPERATOR_TOKEN}=operator:alice,{AGENT_TOKEN}=agent:planner-bot"
CAPABILITY = "graph-analysis"


@dataclass
class ServeProcess:
    api: str
    xds_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def http(self, token: str = OPERATOR_TOKEN) -> httpx.Client:
        c = httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {token}"}, timeout=15)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass


def start_serve(*extra: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> ServeProcess:
    """`meshctl serve` with the demo topology, the repo's policies and two tokens; waits for /readyz."""
    if not MESHCTL.is_file():
        raise RuntimeError(
            f"the meshctl entry point is missing at {MESHCTL}: install the project (make setup)"
        )
    api_port, xds_port = free_port(), free_port()
    log = Path(tempfile.mkstemp(prefix="meshctl-serve-", suffix=".log")[1])
    full_env = {**os.environ, "MESHCTL_TOKENS": TOKENS_ENV}
    full_env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # a developer's collector is not this test's
    full_env.update(env or {})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(MESHCTL),
                "serve",
                "--api", f"127.0.0.1:{api_port}",
                "--xds", f"127.0.0.1:{xds_port}",
                "--topology", str(TOPOLOGY),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )  # fmt: skip
    server = ServeProcess(f"http://127.0.0.1:{api_port}", xds_port, proc, log)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"meshctl serve exited with {proc.returncode}:\n{server.logs()}")
            try:
                if httpx.get(f"{server.api}/readyz", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"meshctl serve not ready after {timeout}s:\n{server.logs()}")
            time.sleep(0.1)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="module")
def serve() -> Iterator[ServeProcess]:
    server = start_serve("--history-limit", "500")
    try:
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@dataclass
class CliResult:
    stdout: str
    stderr: str
    exit_code: int

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """`meshctl --api URL --token T [--output json] ARGS...` run in-process against a live server."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self.runner = CliRunner()

    def run(
        self, *args: str, token: str = OPERATOR_TOKEN, json_out: bool = False, ok: bool = True
    ) -> CliResult:
        argv = ["--api", self.server.api, "--token", token]
        if json_out:
            argv += ["--output", "json"]
        result = self.runner.invoke(app, [*argv, *args], env={"COLUMNS": "220"})
        out = CliResult(result.stdout, result.stderr, result.exit_code)
        if ok and result.exit_code != 0:
            raise AssertionError(
                f"meshctl {' '.join(args)} exited {result.exit_code}:\n{result.output}\n{result.exception!r}"
            )
        if not ok and result.exit_code == 0:
            raise AssertionError(f"meshctl {' '.join(args)} should have failed:\n{result.output}")
        return out

    def json(self, *args: str, token: str = OPERATOR_TOKEN) -> Any:
        return self.run(*args, token=token, json_out=True).json()

    def table(self, *args: str, token: str = OPERATOR_TOKEN) -> str:
        return self.run(*args, token=token).stdout

    def fails(self, *args: str, token: str = OPERATOR_TOKEN) -> CliResult:
        return self.run(*args, token=token, ok=False)


def provider_file(tmp: Path, pid: str, zone: str, *, capacity: float = 200, p99: float = 10, cost: float = 0.5,
                  ttl_s: float | None = None, port: int = 9000) -> Path:  # fmt: skip
    body: dict[str, Any] = {
        "id": pid,
        "capabilities": [CAPABILITY],
        "zone": zone,
        "endpoints": [{"address": "127.0.0.1", "port": port}],
        "labels": {"compliance": ["gdpr"]},
        "capacity_rps": capacity,
        "latency_p99_ms": p99,
        "cost_per_1k": cost,
    }
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    path = tmp / f"{pid}.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


class NackingSidecar:
    """A stand-in proxy on one SotW ADS stream (sync gRPC, own thread) that ACKs everything except
    the types it was told to reject, which it NACKs with an error text as Envoy would."""

    def __init__(self, xds_port: int, node_id: str, service: str, zone: str, reject: tuple[str, ...]) -> None:
        self.target = f"127.0.0.1:{xds_port}"
        self.node_id, self.service, self.zone, self.reject = node_id, service, zone, reject
        self.nacks = 0
        self._requests: queue.Queue[Any] = queue.Queue()
        self._channel: grpc.Channel | None = None
        self._call: Any = None
        self._thread: threading.Thread | None = None

    def _names(self, type_url: str) -> list[str]:
        return [] if type_url in xds_resources.WILDCARD_TYPES else ["*"]

    def start(self) -> NackingSidecar:
        node = base_pb2.Node(id=self.node_id, cluster=self.service)
        node.locality.zone = self.zone
        for i, t in enumerate(xds_resources.ORDER):
            req = discovery_pb2.DiscoveryRequest(type_url=t, resource_names=self._names(t))
            if i == 0:
                req.node.CopyFrom(node)
            self._requests.put(req)
        self._channel = grpc.insecure_channel(self.target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        self._call = stub.StreamAggregatedResources(iter(self._requests.get, None))
        self._thread = threading.Thread(target=self._answer, name=f"sidecar-{self.node_id}", daemon=True)
        self._thread.start()
        return self

    def _answer(self) -> None:
        acked: dict[str, str] = {}
        try:
            for resp in self._call:
                t = resp.type_url
                reply = discovery_pb2.DiscoveryRequest(
                    type_url=t, response_nonce=resp.nonce, resource_names=self._names(t)
                )
                if t in self.reject:
                    self.nacks += 1
                    reply.version_info = acked.get(t, "")
                    reply.error_detail.code = 3
                    reply.error_detail.message = f"{self.node_id}: route rejected by the test sidecar"
                else:
                    acked[t] = reply.version_info = resp.version_info
                self._requests.put(reply)
        except grpc.RpcError:
            pass  # cancelled at stop()

    def stop(self) -> None:
        self._requests.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            self._channel.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
