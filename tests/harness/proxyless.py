"""Drives grpc_client.py in a subprocess and collects which upstream answered each call."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_SCRIPT = Path(__file__).with_name("grpc_client.py")


class ProxylessClient:
    """A grpcio xDS client process (``xds:///target``) stopped by PID."""

    def __init__(self, target: str, bootstrap: dict[str, Any], interval_s: float = 0.05) -> None:
        self.target = target
        self.bootstrap = bootstrap
        self.interval_s = interval_s
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="meshctl-grpc-"))
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: Any = None
        self._final_stderr: str | None = None

    def start(self) -> ProxylessClient:
        boot = self._dir / "bootstrap.json"
        boot.write_text(json.dumps(self.bootstrap))
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=str(boot), PYTHONUNBUFFERED="1")
        self._stderr = open(self._dir / "stderr.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(_SCRIPT), self.target, str(self.interval_s)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.strip())

    def answers(self, last: int | None = None) -> list[str]:
        """Server names of successful calls ('' for failures), oldest first."""
        with self._lock:
            lines = list(self.lines if last is None else self.lines[-last:])
        return [ln[3:] if ln.startswith("OK ") else "" for ln in lines]

    def mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return list(self.lines[mark:])

    def stderr(self) -> str:
        if self._final_stderr is not None:
            return self._final_stderr
        try:
            return (self._dir / "stderr.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def describe(self) -> str:
        with self._lock:
            tail = self.lines[-10:]
        return "client output (last 10):\n" + "\n".join(tail) + "\nclient stderr:\n" + self.stderr()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
            self._final_stderr = self.stderr()
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ProxylessClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
