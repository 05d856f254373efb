"""/v1/proxies: sync status of every proxy (istioctl proxy-status) and the config one proxy was sent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from google.protobuf.json_format import MessageToDict

from meshctl.api.auth import Identity, operator
from meshctl.api.routers.contracts import cp
from meshctl.controlplane import ControlPlane
from meshctl.errors import NotFound
from meshctl.xds.resources import SHORT_NAMES

router = APIRouter(prefix="/v1/proxies", tags=["proxies"])


def _sync_state(p: dict[str, Any], expected: dict[str, str]) -> str:
    types = p["types"]
    if any(t.get("last_nack") and t["last_nack"]["version"] == t.get("version_sent") for t in types.values()):
        return "nacked"
    for type_url, version in expected.items():
        t = types.get(type_url)
        if t is None or t.get("version_acked") != version:
            return "behind"
    return "synced"


@router.get("")
async def list_proxies(
    plane: Annotated[ControlPlane, Depends(cp)], _: Annotated[Identity, Depends(operator)]
) -> list[dict[str, Any]]:
    out = []
    for st in sorted(plane.status.list(), key=lambda s: s.node.id):
        d = st.to_dict()
        snap = plane.cache.get_snapshot(st.node.id)
        expected = snap.versions() if snap else {}
        d["sync"] = _sync_state(d, expected) if st.connected else "disconnected"
        d["expected"] = {SHORT_NAMES.get(t, t): v for t, v in expected.items()}
        out.append(d)
    return out


@router.get("/{node_id}/config")
async def proxy_config(
    node_id: str, plane: Annotated[ControlPlane, Depends(cp)], _: Annotated[Identity, Depends(operator)]
) -> dict[str, Any]:
    snap = plane.cache.get_snapshot(node_id)
    if snap is None:
        raise NotFound(f"no configuration for node {node_id!r}", field="node_id")
    st = plane.status.get(node_id)
    return {
        "node": st.to_dict() if st else {"node": {"id": node_id}},
        "versions": {SHORT_NAMES.get(t, t): v for t, v in snap.versions().items()},
        "resources": {
            SHORT_NAMES.get(t, t): {
                name: {"version": snap.resource_versions(t)[name], "resource": MessageToDict(msg)}
                for name, msg in snap.resources(t).items()
            }
            for t in snap.type_urls()
        },
    }
