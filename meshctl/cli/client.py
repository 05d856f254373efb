"""The CLI's side of the REST API: an httpx client, error display, and table/JSON output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


@dataclass
class Settings:
    api: str = "http://127.0.0.1:8080"
    token: str | None = None
    output: str = "table"

    @property
    def json(self) -> bool:
        return self.output == "json"


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return Settings(api=os.environ.get("MESHCTL_API", Settings.api), token=os.environ.get("MESHCTL_TOKEN"))


class Api:
    def __init__(self, s: Settings, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {s.token}"} if s.token else {}
        self.http = httpx.Client(base_url=s.api.rstrip("/"), headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            err.print(f"[red]cannot reach the control plane at {self.http.base_url}[/]: {e}")
            raise typer.Exit(3) from None
        if r.status_code >= 400:
            try:
                body = r.json().get("error", {})
            except (ValueError, AttributeError):
                body = {"code": str(r.status_code), "message": r.text}
            where = f" [dim]({body.get('field')})[/]" if body.get("field") else ""
            err.print(f"[red]{r.status_code} {body.get('code', '')}[/]: {body.get('message', '')}{where}")
            raise typer.Exit(1)
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.call("POST", path, json=body, params={k: v for k, v in params.items() if v is not None})

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def api(ctx: typer.Context) -> Api:
    return Api(settings(ctx))


def ts(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.replace("+00:00", "Z")
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def emit(ctx: typer.Context, data: Any, render: Any = None) -> None:
    """JSON for scripts (--output json), otherwise `render(data)` for people."""
    if settings(ctx).json or render is None:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render(data)


STATE_STYLE = {
    "active": "green",
    "degraded": "yellow",
    "pending_approval": "cyan",
    "expired": "dim",
    "revoked": "dim",
    "rejected": "red",
    "synced": "green",
    "behind": "yellow",
    "nacked": "red",
    "disconnected": "dim",
    "admitted": "green",
    "counter_offer": "yellow",
}


def styled(value: str) -> str:
    style = STATE_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*("-" if v is None else str(v) for v in row))
    console.print(t)
