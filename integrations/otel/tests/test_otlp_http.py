"""Once over the wire: OTelSink -> SDK BatchSpanProcessor -> OTLP/HTTP -> a local receiver.

The receiver is a tiny HTTP server on 127.0.0.1 (an ephemeral port) that decodes each
`ExportTraceServiceRequest` protobuf with the opentelemetry-proto package.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agent_finops import CostTracker, PriceBook, SQLLedger
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_otel import OTelSink, otel_span_id, otel_trace_id


class Receiver(ThreadingHTTPServer):
    """Keeps every decoded export request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.paths.append(self.path)
        self.server.content_types.append(self.headers["Content-Type"])
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # never through a proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def test_spans_arrive_over_otlp_http_with_cost_and_ids(
    demo: ModuleType, ledger: SQLLedger, receiver: Receiver
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "finops-test"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.url, timeout=10))
    )
    tracker = CostTracker(
        ledger, prices=PriceBook(demo.PRICING), sinks=[OTelSink(tracer_provider=provider)]
    )
    run_id = uuid.uuid4()
    demo.build_team().invoke(
        {"messages": [HumanMessage(demo.REQUEST)]},
        config={"callbacks": [FinOpsCallbackHandler(tracker)], "run_id": run_id},
    )
    tracker.flush()  # converts, then force-flushes the batch processor: the POST is done
    tracker.close()
    provider.shutdown()

    assert receiver.requests and set(receiver.paths) == {"/v1/traces"}
    assert set(receiver.content_types) == {"application/x-protobuf"}
    spans = [
        (rs, span)
        for request in receiver.requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    trace = ledger.load_trace(str(run_id))
    assert trace is not None
    assert len(spans) == len(trace.spans)
    by_id = {}
    for rs, span in spans:
        attrs = {a.key: _value(a.value) for a in span.attributes}
        by_id[attrs["agent_finops.span_id"]] = (span, attrs)
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        assert resource["service.name"] == "finops-test"
        assert span.trace_id == otel_trace_id(str(run_id)).to_bytes(16, "big")
    for record in trace.spans:
        span, attrs = by_id[record.span_id]
        assert span.span_id == otel_span_id(record.span_id).to_bytes(8, "big")
        parent = record.parent_span_id
        assert span.parent_span_id == (otel_span_id(parent).to_bytes(8, "big") if parent else b"")
    costs = [attrs for _, attrs in by_id.values() if "gen_ai.usage.cost.amount" in attrs]
    assert sum(Decimal(a["agent_finops.cost.usd"]) for a in costs) == Decimal("0.0670749")
    assert sum(a["gen_ai.usage.cost.amount"] for a in costs) == pytest.approx(0.0670749)
    assert {a["gen_ai.usage.cost.currency"] for a in costs} == {"USD"}
    cached = [a for a in costs if a.get("gen_ai.usage.cache_read.input_tokens")]
    assert cached and all(
        a["gen_ai.usage.input_tokens"] >= a["gen_ai.usage.cache_read.input_tokens"] for a in cached
    )
