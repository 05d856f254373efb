"""The one exception tree of meshctl.

Domain code raises these; only ``meshctl.api.errors`` maps them to HTTP (status + JSON body
``{"error": {"code": ..., "message": ..., "field": ...}}``). Each class carries its own
machine-readable ``code`` and the HTTP status the API answers with, so the mapping lives here,
next to the meaning, and the API layer stays a loop over this table.
"""

from __future__ import annotations

from typing import Any


class MeshError(Exception):
    """Base of every error meshctl raises on purpose."""

    code = "mesh_error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class ValidationFailed(MeshError):
    """Input is well-formed JSON but semantically wrong (unknown zone, negative rps, ...)."""

    code = "validation_failed"
    http_status = 422


class NotFound(MeshError):
    code = "not_found"
    http_status = 404


class Conflict(MeshError):
    """The request contradicts current state (duplicate id, contract not in a renewable state)."""

    code = "conflict"
    http_status = 409


class Unauthorized(MeshError):
    code = "unauthorized"
    http_status = 401


class Forbidden(MeshError):
    code = "forbidden"
    http_status = 403


class PolicyError(MeshError):
    """A policy file or expression is invalid; ``field`` is ``file:line``."""

    code = "invalid_policy"
    http_status = 422


class InconsistentSnapshot(MeshError):
    """A snapshot references a resource it does not contain (checked before it is set)."""

    code = "inconsistent_snapshot"
    http_status = 500


class StoreUnavailable(MeshError):
    """The durable store cannot be reached; writes answer 503 with Retry-After."""

    code = "store_unavailable"
    http_status = 503

    def __init__(self, message: str = "store unavailable", *, retry_after_s: int = 2, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class CapacityConflict(MeshError):
    """An atomic reservation lost a race: the capacity it was solved against is gone."""

    code = "capacity_conflict"
    http_status = 409


class TamperedAudit(MeshError):
    code = "audit_chain_broken"
    http_status = 500
