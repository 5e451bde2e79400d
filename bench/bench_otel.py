"""Exporter overhead: the bench_tracking graph (2,000 fake model calls) with OTelSink on.

Three modes, interleaved in rounds (a different order each round), median round reported:
(a) no callback; (c) `FinOpsCallbackHandler` into a SQLite file ledger (bench_tracking's
mode c); (d) the same plus `OTelSink` exporting every span through the OpenTelemetry SDK
(a `BatchSpanProcessor` into an in-memory exporter) and the cost/token/call counters (an
in-memory metric reader). The final `tracker.flush()` (ledger durable, every span exported)
is inside the timed region. After each round of (d) the exported spans are checked against
the ledger: one span per ledger span, costs summing to the expected total.

    python bench/bench_otel.py [--rounds 5]

It also reports the time spent inside `OTelSink.emit` on the caller's thread (the only part
of the exporter on the hot path; conversion runs on the sink's thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Mode, interleaved_rounds, print_modes_table
from bench_tracking import (
    CALLS_PER_RUN,
    RUNS,
    TOTAL_CALLS,
    build_graph,
    check_ledger,
    expected_cost,
    mode_finops,
    mode_none,
    run_all,
)
from langgraph.graph.state import CompiledStateGraph
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from agent_finops import CostTracker, SQLLedger
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_otel import OTelSink

EMIT_SECONDS: list[float] = []


class _TimedSink(OTelSink):
    """OTelSink, timing each `emit` (on the caller's thread)."""

    def emit(self, records: Any) -> None:
        start = time.perf_counter()
        super().emit(records)
        EMIT_SECONDS[-1] += time.perf_counter() - start


def mode_otel(graph: CompiledStateGraph, tmp: Path) -> float:
    """(d) (c) plus OTelSink with traces and metrics."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    db = tmp / f"ledger-otel-{time.monotonic_ns()}.sqlite"
    ledger = SQLLedger.from_url(f"sqlite:///{db}")
    EMIT_SECONDS.append(0.0)
    sink = _TimedSink(tracer_provider=provider, meter_provider=meters)
    tracker = CostTracker(ledger, tags={"team": "bench"}, sinks=[sink])
    handler = FinOpsCallbackHandler(tracker)
    try:
        start = time.perf_counter()
        run_all(graph, [handler])
        tracker.flush()
        elapsed = time.perf_counter() - start
        check_ledger(ledger, handler)
        spans = exporter.get_finished_spans()
        rows = sum(
            len(t.spans)
            for r in ledger.list_runs(limit=RUNS + 1)
            if (t := ledger.load_trace(r.run.trace_id))
        )
        assert len(spans) == rows, (len(spans), rows)
        cost = sum(
            (
                Decimal(str(s.attributes["agent_finops.cost.usd"]))
                for s in spans
                if s.attributes and "agent_finops.cost.usd" in s.attributes
            ),
            Decimal(0),
        )
        assert cost == expected_cost(), (cost, expected_cost())
        assert sink.errors == 0 and sink.dropped == 0
    finally:
        tracker.close()
        ledger.close()
        provider.shutdown()
        meters.shutdown()
    return elapsed


MODES: dict[str, tuple[str, Mode]] = {
    "a": ("no callback", mode_none),
    "c": ("FinOpsCallbackHandler + SQLite ledger", mode_finops),
    "d": ("(c) + OTelSink (spans + metrics)", mode_otel),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    graph = build_graph()
    with tempfile.TemporaryDirectory(prefix="finops-bench-otel-") as name:
        times = interleaved_rounds(
            MODES, graph, Path(name), args.rounds, after_warmup=EMIT_SECONDS.clear
        )
    print(
        f"{TOTAL_CALLS:,} model calls ({RUNS} runs x {CALLS_PER_RUN}), median of {args.rounds} "
        f"interleaved rounds; Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    base = statistics.median(times["a"])
    print_modes_table(MODES, times, TOTAL_CALLS, "a")
    c, d = statistics.median(times["c"]), statistics.median(times["d"])
    print(
        f"tracking alone: {(c - base) / TOTAL_CALLS * 1e6:.0f} us/call over (a); with the "
        f"exporter: {(d - base) / TOTAL_CALLS * 1e6:.0f} us/call; the exporter adds "
        f"{(d - c) / TOTAL_CALLS * 1e6:.0f} us/call; OTelSink.emit on the caller's thread: "
        f"{statistics.median(EMIT_SECONDS) / TOTAL_CALLS * 1e6:.1f} us/call"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
