"""Fixtures for the OpenTelemetry exporter tests: SDK providers with in-memory readers."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_finops import SQLLedger

DEMO = Path(__file__).resolve().parents[3] / "examples" / "supervisor_demo.py"


@dataclass
class OTel:
    """A tracer provider exporting to memory and a meter provider read from memory."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    metrics: InMemoryMetricReader


@pytest.fixture
def otel() -> Iterator[OTel]:
    """Fresh SDK providers (never the global ones)."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    yield OTel(tracer_provider, spans, meter_provider, metrics)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLLedger]:
    """A fresh SQLite ledger file under the test's temp directory."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        yield ledger


@pytest.fixture(scope="session")
def demo() -> ModuleType:
    """examples/supervisor_demo.py as a module (its team graph, prices and policy)."""
    spec = importlib.util.spec_from_file_location("supervisor_demo_for_otel", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
