"""The README's main job: `meshctl demo` tells the whole story with real processes and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from harness import envoy_binary

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_whole_story_and_stops_everything() -> None:
    env = {**os.environ, "MESHCTL_ENVOY": envoy_binary(), "COLUMNS": "200", "NO_COLOR": "1"}
    meshctl = Path(sys.executable).parent / "meshctl"
    done = subprocess.run(
        [str(meshctl), "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    # The agent's contract is admitted, pushed and ACKed by the real sidecar.
    assert re.search(r"answer: admitted in [\d.]+ ms", out), out
    assert "acked by: fraud-detection-1" in out
    # The non-EU provider is dropped by policy, whatever its price.
    assert re.search(r"ga-virginia\s.*policy:", out), out
    # Real traffic: every request through Envoy succeeded before, during and after the failover.
    statuses = re.findall(r"HTTP statuses: (.*)", out)
    assert len(statuses) == 3, out
    assert all(s.strip().startswith("200 x") and "," not in s for s in statuses), statuses
    assert "route is gone" in out
    assert "capacity still held: none" in out
    assert "chain intact: True" in out
    # Everything it started is gone: no Envoy or upstream child survives the demo.
    leftovers = subprocess.run(
        ["pgrep", "-f", "meshctl.local.upstream|meshctl-fraud-detection-1"], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout
