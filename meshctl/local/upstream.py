"""A real HTTP upstream the proxies route to (threaded; the demo's providers and the tests')."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from meshctl.local.proc import end_process


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's upstream pool expects
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        owner = self.server.owner
        owner._record(self.path)
        if self.path.startswith("/echo"):
            body = json.dumps(
                {"upstream": owner.name, "path": self.path, "method": self.command,
                 "headers": {k.lower(): v for k, v in self.headers.items()}}
            ).encode()  # fmt: skip
            ctype = "application/json"
        else:
            body = owner.name.encode()
            ctype = "text/plain"
        self.send_response(owner.status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-upstream", owner.name)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: UpstreamServer


class UpstreamServer:
    """An HTTP/1.1 server on 127.0.0.1 answering `status` with its name in the body and in the
    `x-upstream` header; `/echo` returns the request headers as JSON. Counts hits."""

    def __init__(self, name: str, port: int = 0, status: int = 200) -> None:
        self.name = name
        self.status = status
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.paths: Counter[str] = Counter()
        self.port = 0

    def start(self) -> UpstreamServer:
        server = _Server(("127.0.0.1", self._requested_port), _Handler)
        server.owner = self
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"upstream-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def _record(self, path: str) -> None:
        with self._lock:
            self.paths[path] += 1

    @property
    def hits(self) -> int:
        with self._lock:
            return sum(self.paths.values())

    def reset(self) -> None:
        with self._lock:
            self.paths.clear()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class UpstreamProcess:
    """An UpstreamServer in its own process, for when a provider must die for real.

    In-process upstreams keep answering on established keep-alive connections after `stop()`;
    a killed process does not. Started as `python -m meshctl.local.upstream NAME`, stopped by PID.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, timeout: float = 10.0) -> UpstreamProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshctl.local.upstream", self.name],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.kill()
            raise RuntimeError(f"upstream {self.name} did not start (got {line!r})")
        self.port = int(line)
        return self

    def kill(self) -> None:
        """SIGKILL: the provider vanishes without a goodbye, connections reset."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        end_process(proc, sig)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    server = UpstreamServer(sys.argv[1]).start()
    print(server.port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()
