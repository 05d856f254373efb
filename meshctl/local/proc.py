"""Ending a child process by its PID: the one place that knows the signal-then-SIGKILL dance."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def end_process(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Send `sig`; if the process outlives `grace` seconds, SIGKILL it. Always reaps it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass
