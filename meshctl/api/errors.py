"""MeshError and request-validation failures → JSON `{"error": {code, message, field}}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshctl.errors import MeshError, StoreUnavailable


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "sla", "rps") -> "sla.rps"; keep "query.x"/"path.x" for non-body inputs.
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(MeshError)
    async def mesh_error(_: Request, exc: MeshError) -> JSONResponse:
        headers = {}
        if isinstance(exc, StoreUnavailable):
            headers["Retry-After"] = str(exc.retry_after_s)
        if exc.http_status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        body = {
            "code": "validation_failed",
            "message": f"{first['field']}: {first['message']}",
            "field": first["field"],
            "details": {"errors": errors},
        }
        return JSONResponse({"error": body}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code
        )
