"""Who is connected over xDS and how far each proxy is in sync (read by the API, CLI and web view)."""

from __future__ import annotations

import builtins
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf.json_format import MessageToDict

from meshctl.xds import resources as r

StreamKind = Literal["sotw", "delta"]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True)
class NodeInfo:
    """Identity a proxy announces in its first request (Envoy's ``node``)."""

    id: str
    cluster: str = ""  # the service this proxy fronts
    zone: str = ""
    region: str = ""
    sub_zone: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    user_agent: str = ""

    @classmethod
    def from_proto(cls, node: Any) -> NodeInfo:
        """From an ``envoy.config.core.v3.Node``."""
        version = node.user_agent_version
        if not version and node.HasField("user_agent_build_version"):
            v = node.user_agent_build_version.version
            version = f"{v.major_number}.{v.minor_number}.{v.patch}"
        agent = "/".join(p for p in (node.user_agent_name, version) if p)
        return cls(
            id=node.id,
            cluster=node.cluster,
            zone=node.locality.zone,
            region=node.locality.region,
            sub_zone=node.locality.sub_zone,
            metadata=MessageToDict(node.metadata) if node.HasField("metadata") else {},
            user_agent=agent,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cluster": self.cluster,
            "zone": self.zone,
            "region": self.region,
            "sub_zone": self.sub_zone,
            "metadata": self.metadata,
            "user_agent": self.user_agent,
        }


@dataclass
class NackInfo:
    version: str
    error: str
    at: float


@dataclass
class TypeStatus:
    version_sent: str | None = None
    version_acked: str | None = None
    last_nack: NackInfo | None = None
    nacks: int = 0
    responses_sent: int = 0
    last_sent_at: float | None = None
    last_ack_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        nack = self.last_nack
        return {
            "version_sent": self.version_sent,
            "version_acked": self.version_acked,
            "in_sync": self.version_sent is not None and self.version_sent == self.version_acked,
            "last_nack": None
            if nack is None
            else {"version": nack.version, "error": nack.error, "at": _iso(nack.at)},
            "nacks": self.nacks,
            "responses_sent": self.responses_sent,
            "last_sent_at": _iso(self.last_sent_at),
            "last_ack_at": _iso(self.last_ack_at),
        }


@dataclass
class ProxyStatus:
    node: NodeInfo
    stream: StreamKind
    connected: bool
    connected_since: float
    disconnected_at: float | None = None
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeStatus:
        s = self.types.get(type_url)
        if s is None:
            s = self.types[type_url] = TypeStatus()
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node.to_dict(),
            "stream": self.stream,
            "connected": self.connected,
            "connected_since": _iso(self.connected_since),
            "disconnected_at": _iso(self.disconnected_at),
            "types": {
                t: {"type": r.SHORT_NAMES.get(t, t), **s.to_dict()} for t, s in sorted(self.types.items())
            },
        }


class ProxyStatusRegistry:
    """Per-node sync state. Disconnected proxies stay listed for ``retention_s`` so operators see who dropped.

    One entry per node id: a reconnecting proxy replaces its old entry, and the close of a stale
    stream (``token`` mismatch) does not mark the new one disconnected.
    """

    def __init__(self, retention_s: float = 600.0, clock: Callable[[], float] = time.time):
        self.retention_s = retention_s
        self._clock = clock
        self._proxies: dict[str, ProxyStatus] = {}
        self._tokens: dict[str, int] = {}
        self._counter = itertools.count(1)

    # -- written by the xDS server -------------------------------------------------------------
    def open(self, node: NodeInfo, stream: StreamKind) -> int:
        """Register a new stream for ``node``; returns the token ``close`` needs."""
        token = next(self._counter)
        self._proxies[node.id] = ProxyStatus(
            node=node, stream=stream, connected=True, connected_since=self._clock()
        )
        self._tokens[node.id] = token
        return token

    def close(self, node_id: str, token: int) -> None:
        proxy = self._proxies.get(node_id)
        if proxy is not None and self._tokens.get(node_id) == token:
            proxy.connected = False
            proxy.disconnected_at = self._clock()

    def record_sent(self, node_id: str, type_url: str, version: str) -> None:
        if (proxy := self._proxies.get(node_id)) is not None:
            s = proxy.type(type_url)
            s.version_sent = version
            s.responses_sent += 1
            s.last_sent_at = self._clock()

    def record_resumed(self, node_id: str, type_url: str, version: str) -> None:
        """A reconnecting proxy already holds ``version``, so nothing was sent for it."""
        if (proxy := self._proxies.get(node_id)) is not None:
            s = proxy.type(type_url)
            s.version_sent = s.version_acked = version
            s.last_ack_at = self._clock()

    def record_ack(self, node_id: str, type_url: str, version: str) -> None:
        if (proxy := self._proxies.get(node_id)) is not None:
            s = proxy.type(type_url)
            s.version_acked = version
            s.last_ack_at = self._clock()

    def record_nack(self, node_id: str, type_url: str, version: str, error: str) -> None:
        if (proxy := self._proxies.get(node_id)) is not None:
            s = proxy.type(type_url)
            s.last_nack = NackInfo(version=version, error=error, at=self._clock())
            s.nacks += 1

    # -- read by operators ---------------------------------------------------------------------
    def _prune(self) -> None:
        cutoff = self._clock() - self.retention_s
        for node_id in [
            n
            for n, p in self._proxies.items()
            if not p.connected and p.disconnected_at is not None and p.disconnected_at < cutoff
        ]:
            del self._proxies[node_id]
            self._tokens.pop(node_id, None)

    def list(self) -> builtins.list[ProxyStatus]:
        self._prune()
        return [self._proxies[n] for n in sorted(self._proxies)]

    def get(self, node_id: str) -> ProxyStatus | None:
        self._prune()
        return self._proxies.get(node_id)

    def connected_count(self) -> int:
        return sum(1 for p in self._proxies.values() if p.connected)

    def to_dict(self) -> dict[str, Any]:
        proxies = self.list()
        return {
            "connected": sum(1 for p in proxies if p.connected),
            "proxies": [p.to_dict() for p in proxies],
        }
