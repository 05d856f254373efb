"""A real Envoy process (the demo's sidecars and the tests'): bootstrapped by meshctl.bootstrap, stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from meshctl.bootstrap import AdsMode, envoy_bootstrap
from meshctl.local.net import HttpResponse, ProcessExited, free_port, http_request, wait_for, wait_for_sync
from meshctl.local.proc import end_process

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENVOY = REPO_ROOT / ".tools" / "envoy" / "envoy" / "_bin" / "envoy"


def envoy_binary() -> str:
    """Path of the Envoy binary tests run: $MESHCTL_ENVOY, else the repository's .tools copy.

    Raises RuntimeError (never skips): a suite that silently skips its Envoy tests proves nothing.
    """
    env = os.environ.get("MESHCTL_ENVOY")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise RuntimeError(f"MESHCTL_ENVOY={env!r} is not an executable file")
        return env
    if DEFAULT_ENVOY.is_file() and os.access(DEFAULT_ENVOY, os.X_OK):
        return str(DEFAULT_ENVOY)
    raise RuntimeError(f"Envoy binary not found: set MESHCTL_ENVOY or install Envoy 1.40 at {DEFAULT_ENVOY}")


class EnvoyProcess:
    """One Envoy, its bootstrap and logs in a private temp dir.

    Use as a context manager or call start()/stop(). `start()` blocks only until the admin
    endpoint answers; `await ready()` waits for LIVE, which needs the xDS server to answer
    (so it must not block the loop that server runs on).
    """

    def __init__(
        self,
        bootstrap: dict[str, Any],
        *,
        name: str = "envoy",
        binary: str | None = None,
        log_level: str = "warning",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.name = name
        self.binary = binary or envoy_binary()
        self.log_level = log_level
        self.extra_args = extra_args
        self.admin_port = int(bootstrap["admin"]["address"]["socket_address"]["port_value"])
        self.listener_port = int(bootstrap["node"].get("metadata", {}).get("listener_port", 0))
        self.node_id = str(bootstrap["node"]["id"])
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._final_logs: str | None = None

    @classmethod
    def for_node(
        cls,
        node_id: str,
        xds_port: int,
        *,
        service: str = "consumer",
        zone: str = "zone-a",
        region: str = "",
        ads: AdsMode = "sotw",
        listener_port: int | None = None,
        **kw: Any,
    ) -> EnvoyProcess:
        """An Envoy for `node_id` on fresh admin and listener ports."""
        boot = envoy_bootstrap(
            node_id,
            service,
            zone,
            region=region,
            xds_port=xds_port,
            admin_port=free_port(),
            ads=ads,
            listener_port=listener_port or free_port(),
        )
        return cls(boot, name=kw.pop("name", node_id), **kw)

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout: float = 20.0) -> EnvoyProcess:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"meshctl-{self.name}-"))
        cfg = self.workdir / "bootstrap.yaml"
        cfg.write_text(yaml.safe_dump(self.bootstrap, sort_keys=False))
        self._log_file = open(self.workdir / "envoy.log", "wb")
        args = [
            self.binary,
            "-c", str(cfg),
            "--disable-hot-restart",
            "--concurrency", "1",
            "-l", self.log_level,
            # A fast shutdown keeps test teardown short; drains are not under test here.
            "--drain-time-s", "0",
            "--parent-shutdown-time-s", "1",
            *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            wait_for_sync(
                lambda: self._check_alive() and self.admin("/server_info").status == 200,
                timeout=timeout,
                what=f"{self.name} admin on :{self.admin_port}",
                details=self.logs,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _check_alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessExited(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
        return True

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; always by this process's PID."""
        proc, self.proc = self.proc, None
        end_process(proc, signal.SIGTERM, grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.workdir is not None:
            self._final_logs = self._read_logs()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> EnvoyProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------
    def _read_logs(self) -> str:
        if self.workdir is None:
            return ""
        try:
            return (self.workdir / "envoy.log").read_text(errors="replace")
        except OSError:
            return ""

    def logs(self, tail: int = 60) -> str:
        text = self._final_logs if self._final_logs is not None else self._read_logs()
        lines = text.splitlines()[-tail:]
        return f"--- {self.name} log (last {len(lines)} lines) ---\n" + "\n".join(lines)

    def admin(self, path: str, method: str = "GET") -> HttpResponse:
        return http_request(self.admin_port, path, method=method, timeout=10.0)

    def is_ready(self) -> bool:
        return self.admin("/ready").status == 200

    async def ready(self, timeout: float = 20.0) -> None:
        """Wait until Envoy is LIVE: its initial LDS/CDS (and their dependencies) arrived."""
        await wait_for(
            lambda: self._check_alive() and self.is_ready(),
            timeout=timeout,
            what=f"{self.name} /ready",
            details=self.logs,
        )

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        path = "/config_dump" + (f"?resource={resource}" if resource else "")
        resp = self.admin(path)
        if resp.status != 200:
            raise AssertionError(f"{self.name} {path}: {resp.status} {resp.text}")
        return dict(json.loads(resp.body))

    def active_clusters(self) -> dict[str, dict[str, Any]]:
        """name -> {version_info, cluster} of the xDS clusters Envoy is using."""
        out: dict[str, dict[str, Any]] = {}
        for cfg in self.config_dump("dynamic_active_clusters").get("configs", []):
            out[cfg["cluster"]["name"]] = cfg
        return out

    def active_listeners(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cfg in self.config_dump("dynamic_listeners").get("configs", []):
            if "active_state" in cfg:
                out[cfg["name"]] = cfg["active_state"]
        return out

    def route_configs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cfg in self.config_dump("dynamic_route_configs").get("configs", []):
            out[cfg["route_config"]["name"]] = cfg
        return out

    def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges (histograms and text readouts left out)."""
        resp = self.admin("/stats" + (f"?filter={filter}" if filter else ""))
        out: dict[str, int] = {}
        for line in resp.text.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stat(self, name: str) -> int:
        return self.stats().get(name, 0)

    async def wait_for(
        self,
        predicate: Callable[[], T | Awaitable[T | None] | None],
        timeout: float = 10.0,
        what: str = "condition",
    ) -> T:
        """Poll without blocking the loop; on timeout the message carries this Envoy's log."""
        return await wait_for(
            lambda: self._check_alive() and predicate(),  # type: ignore[arg-type,return-value]
            timeout=timeout,
            what=f"{self.name}: {what}",
            details=self.logs,
        )

    def wait_for_sync(self, predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
        return wait_for_sync(
            lambda: self._check_alive() and predicate(),  # type: ignore[return-value]
            timeout=timeout,
            what=f"{self.name}: {what}",
            details=self.logs,
        )

