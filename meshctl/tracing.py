"""OpenTelemetry setup: OTLP/gRPC export when OTEL_EXPORTER_OTLP_ENDPOINT is set, nothing otherwise.

The code that makes spans (contracts/service.py: "negotiate" > "policy", "solve", "store",
"translate+push", "ack"; lifecycle.py: "resolve") only uses the API's global tracer; without a
provider those spans are no-ops that cost next to nothing, so tracing stays off unless an operator
points meshctl at a collector. The exporter reads the standard OTEL_EXPORTER_OTLP_* variables
itself (endpoint, headers, insecure, timeout); OTEL_SERVICE_NAME overrides the service name.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from meshctl import __version__
from meshctl.errors import MeshError

log = logging.getLogger(__name__)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


def otlp_endpoint() -> str | None:
    return os.environ.get(TRACES_ENDPOINT_ENV) or os.environ.get(ENDPOINT_ENV) or None


def setup_tracing(service_name: str = "meshctl", *, set_global: bool = True) -> TracerProvider | None:
    """A TracerProvider exporting over OTLP gRPC, or None when no endpoint is configured.

    `set_global=True` (what `meshctl serve` does) makes it the provider every meshctl tracer uses.
    Call `shutdown_tracing` on exit so the last batch is flushed.
    """
    endpoint = otlp_endpoint()
    if endpoint is None:
        return None
    # Imported here: the gRPC exporter pulls in protobuf stubs nobody needs while tracing is off.
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as e:
        # xds-protos ships a stale copy of opentelemetry/proto/*; installed after
        # opentelemetry-proto it overwrites the files the exporter needs (grpc/grpc#42926).
        raise MeshError(
            f"OTLP exporter unavailable ({e}); reinstall opentelemetry-proto after xds-protos: "
            "pip install --force-reinstall --no-deps opentelemetry-proto",
            field=ENDPOINT_ENV,
        ) from e

    attributes = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if set_global:
        trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans over OTLP/gRPC to %s", endpoint)
    return provider


def shutdown_tracing(provider: TracerProvider | None, timeout_ms: int = 5000) -> None:
    if provider is None:
        return
    try:
        provider.force_flush(timeout_ms)
    finally:
        provider.shutdown()
