"""OpenTelemetry: one trace per negotiation, ending with the proxy's ACK; OTLP export when asked."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent import futures

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ops_support import FakeSidecar, provider, request, running_plane, until

from meshctl.tracing import setup_tracing, shutdown_tracing
from meshctl.xds import resources as r


class _Recorder(InMemorySpanExporter):
    """Keeps spans only while a test asks for them: the global provider outlives this module, and
    later tests' spans should not pile up here."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return super().export(spans) if self.recording else SpanExportResult.SUCCESS


_EXPORTER = _Recorder()


def _global_sdk_provider() -> TracerProvider:
    """The process-wide provider can be set once; later tests reuse it with our exporter on it."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    if not getattr(current, "_meshctl_test_exporter", False):
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        current._meshctl_test_exporter = True  # type: ignore[attr-defined]
    assert trace.get_tracer_provider() is current, "another provider was installed globally"
    return current


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _global_sdk_provider()
    _EXPORTER.clear()
    _EXPORTER.recording = True
    yield _EXPORTER
    _EXPORTER.recording = False
    _EXPORTER.clear()


def _by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


async def test_one_trace_holds_the_whole_negotiation_up_to_the_ack(spans: InMemorySpanExporter) -> None:
    async with running_plane() as plane:
        assert plane.xds_port is not None
        await plane.put_provider(provider("p1"))
        async with FakeSidecar(plane.xds_port, "checkout-1", "checkout", "eu-a") as sidecar:
            await until(lambda: r.LISTENER in sidecar.acked, what="the sidecar's first ACK")
            spans.clear()
            decision = await plane.negotiator.propose("agent-1", request(50), wait_acked=True)
            assert decision.outcome == "admitted"
            cid = decision.contract.id  # type: ignore[union-attr]
            route_version = sidecar.acked[r.ROUTE]
    done = [s for s in spans.get_finished_spans() if s.context is not None]
    root = next(s for s in done if s.name == "negotiate" and s.attributes.get("mesh.contract_id") == cid)
    assert root.context is not None
    trace_id = root.context.trace_id
    chain = _by_name([s for s in done if s.context is not None and s.context.trace_id == trace_id])
    assert {"negotiate", "policy", "solve", "store", "translate+push", "ack"} <= set(chain)
    for name in ("policy", "solve", "store", "translate+push", "ack"):
        parent = chain[name].parent
        assert parent is not None and parent.span_id == root.context.span_id, name
    # In the order the chain runs, and the ACK span closes only once the proxy ACKed.
    order = ["policy", "solve", "store", "translate+push", "ack"]
    starts = [chain[n].start_time or 0 for n in order]
    assert starts == sorted(starts)
    assert (chain["ack"].start_time or 0) >= (chain["translate+push"].end_time or 0)
    assert chain["ack"].attributes.get("mesh.acked") is True
    assert chain["translate+push"].attributes.get("mesh.nodes") == 1
    assert root.attributes.get("mesh.outcome") == "admitted"
    assert decision.contract.allocation.acked_by == ["checkout-1"]  # type: ignore[union-attr]
    assert route_version  # the ACKed route version is what the contract reports
    assert decision.contract.allocation.config_version == route_version  # type: ignore[union-attr]


async def test_resolve_gets_its_own_span(spans: InMemorySpanExporter) -> None:
    async with running_plane() as plane:
        await plane.put_provider(provider("p1"))
        await plane.put_provider(provider("p2", zone="eu-b", port=9001))
        d = await plane.negotiator.propose("agent-1", request(150, zone="eu-a"))
        assert d.outcome == "admitted"
        spans.clear()
        await plane.delete_provider("p2")
    resolves = [s for s in spans.get_finished_spans() if s.name == "resolve"]
    assert resolves and resolves[0].attributes.get("mesh.contract_id") == d.contract.id  # type: ignore[union-attr]
    assert "p2 left" in str(resolves[0].attributes.get("mesh.cause"))


def test_no_endpoint_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert setup_tracing(set_global=False) is None


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_spans_are_exported_over_otlp_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        provider_ = setup_tracing("meshctl-test", set_global=False)
        assert provider_ is not None
        with provider_.get_tracer("t").start_as_current_span("negotiate"):
            with provider_.get_tracer("t").start_as_current_span("solve"):
                pass
        shutdown_tracing(provider_)
    finally:
        server.stop(0)
    sent = [
        (rs.resource, span.name)
        for req in collector.requests
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert sorted(name for _, name in sent) == ["negotiate", "solve"]
    attrs = {a.key: a.value.string_value for a in sent[0][0].attributes}
    assert attrs["service.name"] == "meshctl-test"
