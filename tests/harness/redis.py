"""A real redis-server with AOF in a private temp dir, stopped (or crashed) by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from meshctl.local.proc import end_process

from .net import ProcessExited, free_port, wait_for_sync


def redis_binary() -> str:
    path = os.environ.get("MESHCTL_REDIS_SERVER") or shutil.which("redis-server")
    if not path:
        raise RuntimeError("redis-server not found: install it or set MESHCTL_REDIS_SERVER")
    return path


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


class RedisServer:
    """`redis-server` on 127.0.0.1:port. `fsync` is appendfsync: "always", "everysec" or "no".

    `crash()` SIGKILLs it (no shutdown save), `start()` again reuses the same dir and port, so a
    test can check what survives a crash.
    """

    def __init__(self, port: int | None = None, appendonly: bool = True, fsync: str = "always") -> None:
        if fsync not in ("always", "everysec", "no"):
            raise ValueError(f"fsync must be always|everysec|no, got {fsync!r}")
        self.port = port or free_port()
        self.appendonly = appendonly
        self.fsync = fsync
        self.dir = Path(tempfile.mkdtemp(prefix="meshctl-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--save", "",  # AOF only: RDB snapshots would blur what the AOF alone keeps
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.fsync,
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_sync(
                lambda: self._alive_or_raise() and _ping(self.port),
                timeout=timeout,
                what=f"redis-server on :{self.port}",
                details=self.logs,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _alive_or_raise(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessExited(f"redis-server exited with {self.proc.returncode}:\n{self.logs()}")
        return True

    def logs(self) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _signal(self, sig: int, grace: float) -> None:
        proc, self.proc = self.proc, None
        end_process(proc, sig, grace)

    def crash(self) -> None:
        """SIGKILL: only what reached the AOF survives."""
        self._signal(signal.SIGKILL, 5.0)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, 5.0)

    def close(self) -> None:
        """Stop and delete the data dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
