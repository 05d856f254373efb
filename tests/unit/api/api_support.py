"""The API under test, as the unit tests see it: a ControlPlane and its app, and clients for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from meshctl.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[3]
TOKENS = {"agent-a": "tok-a", "agent-b": "tok-b", "oncall": "tok-op"}


@dataclass
class Api:
    plane: ControlPlane
    app: object

    def client(self, who: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://meshctl.test", headers=headers)
