"""Bearer tokens → identities. An agent sees only its own contracts; operators see and approve all.

Tokens come from a YAML/JSON file (`meshctl serve --tokens FILE`) or the environment variable
MESHCTL_TOKENS ("token=agent:fraud-detector,token2=operator:alice"). Tokens are compared in
constant time; they are never logged.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from fastapi import Request

from meshctl.errors import Forbidden, Unauthorized, ValidationFailed

Role = Literal["agent", "operator"]


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def actor(self) -> str:
        return f"operator:{self.name}" if self.is_operator else self.name

    @property
    def owner_filter(self) -> str | None:
        """None for operators (see everything), the agent's own name otherwise."""
        return None if self.is_operator else self.name


class TokenTable:
    def __init__(self, tokens: dict[str, Identity]) -> None:
        self._tokens = dict(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    @classmethod
    def parse_env(cls, text: str) -> TokenTable:
        out: dict[str, Identity] = {}
        for i, item in enumerate(p.strip() for p in text.split(",")):
            if not item:
                continue
            token, _, who = item.partition("=")
            role, _, name = who.partition(":")
            if not token or role not in ("agent", "operator") or not name:
                raise ValidationFailed(
                    "MESHCTL_TOKENS entries look like TOKEN=agent:NAME or TOKEN=operator:NAME",
                    field=f"MESHCTL_TOKENS.{i}",
                )
            out[token] = Identity(name=name, role=role)  # type: ignore[arg-type]
        return cls(out)

    @classmethod
    def load_file(cls, path: str | Path) -> TokenTable:
        data = yaml.safe_load(Path(path).read_text()) or {}
        out: dict[str, Identity] = {}
        for token, who in (data.get("tokens") or {}).items():
            role = who.get("role")
            if role not in ("agent", "operator") or not who.get("name"):
                raise ValidationFailed(
                    f"{path}: token entries need role agent|operator and a name", field="tokens"
                )
            out[str(token)] = Identity(name=str(who["name"]), role=role)
        return cls(out)

    @classmethod
    def from_config(cls, path: str | None = None) -> TokenTable:
        table = cls({})
        if path:
            table = cls.load_file(path)
        env = os.environ.get("MESHCTL_TOKENS")
        if env:
            table._tokens.update(cls.parse_env(env)._tokens)
        return table

    def add(self, token: str, identity: Identity) -> None:
        self._tokens[token] = identity

    @staticmethod
    def generate() -> str:
        return secrets.token_urlsafe(24)

    def identify(self, token: str) -> Identity | None:
        found = None
        for known, who in self._tokens.items():
            # Check every entry so the time taken does not tell which prefix matched.
            if hmac.compare_digest(known.encode(), token.encode()):
                found = who
        return found


def identity(request: Request) -> Identity:
    """FastAPI dependency: the caller's identity, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)", field="authorization")
    table: TokenTable = request.app.state.tokens
    who = table.identify(token.strip())
    if who is None:
        raise Unauthorized("unknown or revoked token", field="authorization")
    return who


def operator(request: Request) -> Identity:
    who = identity(request)
    if not who.is_operator:
        raise Forbidden("this needs the operator role", field="authorization")
    return who
