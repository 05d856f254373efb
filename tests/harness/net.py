"""Ports, polling and plain HTTP: the runtime helpers in meshctl.local.net, re-exported for tests."""

from meshctl.local.net import (
    HttpResponse,
    ProcessExited,
    WaitTimeout,
    ahttp_request,
    free_port,
    http_request,
    port_open,
    wait_for,
    wait_for_sync,
)

__all__ = [
    "HttpResponse",
    "ProcessExited",
    "WaitTimeout",
    "ahttp_request",
    "free_port",
    "http_request",
    "port_open",
    "wait_for",
    "wait_for_sync",
]
