"""The real-process harness itself: processes start, answer, fail loudly and stop by PID."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from harness import EnvoyProcess, RedisServer, UpstreamServer, envoy_binary, free_port, http_request
from harness.envoy import DEFAULT_ENVOY

from meshctl.bootstrap import envoy_bootstrap

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_envoy_binary_missing_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MESHCTL_ENVOY", str(tmp_path / "no-such-envoy"))
    with pytest.raises(RuntimeError, match="MESHCTL_ENVOY"):
        envoy_binary()
    monkeypatch.delenv("MESHCTL_ENVOY")
    assert envoy_binary() == str(DEFAULT_ENVOY)


def test_envoy_starts_serves_admin_and_stops_by_pid(envoy_bin: str) -> None:
    # No xDS server behind it: Envoy still serves admin, but is not ready (initial fetch pending).
    envoy = EnvoyProcess.for_node("harness-1", free_port(), binary=envoy_bin).start()
    try:
        assert envoy.proc is not None
        pid = envoy.proc.pid
        info = envoy.admin("/server_info").json()
        assert info["node"]["id"] == "harness-1"
        assert info["command_line_options"]["concurrency"] == 1
        assert not envoy.is_ready()
        assert "server.live" in envoy.stats()
    finally:
        envoy.stop()
    assert not _pid_alive(pid)
    assert http_request(envoy.admin_port, "/server_info").status == 0


def test_envoy_that_dies_fails_with_its_log(envoy_bin: str) -> None:
    boot = envoy_bootstrap("harness-2", "s", "z", admin_port=free_port())
    boot["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
    with pytest.raises(AssertionError, match="exited with") as err:
        EnvoyProcess(boot, binary=envoy_bin).start()
    assert "NOT_A_TYPE" in str(err.value)


def test_upstream_answers_with_name_and_echoes_headers() -> None:
    with UpstreamServer("up-1") as up:
        resp = http_request(up.port, "/x")
        assert (resp.status, resp.text, resp.headers["x-upstream"]) == (200, "up-1", "up-1")
        echo = http_request(up.port, "/echo", headers={"x-mesh-contract": "c-1"}).json()
        assert echo["upstream"] == "up-1"
        assert echo["headers"]["x-mesh-contract"] == "c-1"
        assert up.hits == 2
    assert http_request(up.port, "/").status == 0


def _redis(port: int, *cmd: str) -> bytes:
    payload = f"*{len(cmd)}\r\n" + "".join(f"${len(c)}\r\n{c}\r\n" for c in cmd)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload.encode())
        return s.recv(1024)


def test_redis_aof_survives_a_crash(redis_server: RedisServer) -> None:
    redis = redis_server
    assert _redis(redis.port, "SET", "k", "v") == b"+OK\r\n"
    assert redis.proc is not None
    pid = redis.proc.pid
    redis.crash()
    assert not _pid_alive(pid)
    redis.start()
    assert _redis(redis.port, "GET", "k") == b"$1\r\nv\r\n"
