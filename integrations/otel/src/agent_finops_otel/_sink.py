"""`OTelSink`: the record sink that exports through the OpenTelemetry SDK, off the hot path."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Tracer, TracerProvider

from agent_finops.exceptions import ConfigurationError
from agent_finops.sinks import Records
from agent_finops_otel._convert import DEFAULT_METRIC_TAGS, Converter

__all__ = ["OTelSink"]

log = logging.getLogger("agent_finops.otel")

SCOPE: Final = "agent_finops_otel"
"""The instrumentation scope of every span and metric the sink makes."""
MAX_QUEUE: Final = 100_000
"""Record groups waiting for the export thread at most (then new groups are counted in
`dropped` and logged, never raised to the caller)."""
LINGER: Final = 0.05
"""Seconds the thread waits after the first queued group, to convert a larger batch at once
(fewer wake-ups competing with the caller's run for the GIL)."""

try:
    _VERSION = version("agent-finops-otel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0.0.0+unknown"


class OTelSink:
    """Exports every run, span, cost event and policy decision as OpenTelemetry telemetry.

    `emit` only queues (a lock and a deque append); one daemon thread converts the records
    to spans on `tracer_provider` (and, with `meter_provider`, to cost/token/call counters)
    when each span ends, with the times our records carry. Nothing is raised into the run:
    a conversion failure is logged and counted in `errors`.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: metrics_api.MeterProvider | None = None,
        metric_tags: Sequence[str] = DEFAULT_METRIC_TAGS,
        allow_decisions: bool = False,
        background: bool = True,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        """Export to `tracer_provider`.

        Args:
            tracer_provider: an SDK `TracerProvider` with your exporters (default: the
                global one, which must then be an SDK provider).
            meter_provider: where the counters go (default: no metrics).
            metric_tags: tags that become metric attributes (keep them low-cardinality).
            allow_decisions: also attach `allow` decisions as span events (default: only
                the ones that did something: warn, threshold, pause, deny, approvals...).
            background: convert on the sink's thread (default) or inline in `emit`.
            max_queue: record groups waiting at most before new ones are dropped (counted).
        """
        provider = tracer_provider or trace_api.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            raise ConfigurationError(
                "OTelSink needs an OpenTelemetry SDK TracerProvider",
                field="tracer_provider",
                value=type(provider).__name__,
                expected="opentelemetry.sdk.trace.TracerProvider (pass one, or set it globally)",
            )
        self.tracer_provider = provider
        self.meter_provider = meter_provider
        tracer = provider.get_tracer(SCOPE, _VERSION)
        if not isinstance(tracer, Tracer):  # pragma: no cover - an SDK provider returns one
            raise ConfigurationError("the tracer provider returned no SDK Tracer")
        meter = meter_provider.get_meter(SCOPE, _VERSION) if meter_provider else None
        self._converter = Converter(
            tracer, meter=meter, metric_tags=metric_tags, allow_decisions=allow_decisions
        )
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._queue: deque[Records] = deque()
        self._queued = 0
        self._done = 0
        self._flushing = 0
        self._closed = False
        self.errors = 0
        """Record groups that failed to convert (each logged with the exception)."""
        self.dropped = 0
        """Record groups refused because the queue was full."""
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="agent-finops-otel", daemon=True)
            self._thread.start()

    def emit(self, records: Records) -> None:
        """Queue a group (or convert it now without a thread); never raises."""
        if self._thread is None:
            self._convert([records])
            return
        with self._cond:
            if self._closed or len(self._queue) >= self._max_queue:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    log.error("agent-finops otel: %d record groups dropped", self.dropped)
                return
            self._queue.append(records)
            self._queued += 1
            if len(self._queue) == 1:
                self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> None:
        """Convert everything emitted so far, then flush the providers' exporters.

        A timeout is logged (the export pipeline is behind), not raised: a slow collector
        must not fail the reports and budgets that flush the tracker.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        log.warning(
                            "agent-finops otel: flush timed out, %d groups pending",
                            target - self._done,
                        )
                        return
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
        millis = 30_000 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        if not self.tracer_provider.force_flush(millis):
            log.warning("agent-finops otel: the tracer provider did not flush in time")
        if self.meter_provider is not None and hasattr(self.meter_provider, "force_flush"):
            self.meter_provider.force_flush(millis)

    def close(self) -> None:
        """Flush, then stop the thread (the providers stay yours to shut down)."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                linger_until = time.monotonic() + LINGER
                while not (self._closed or self._flushing):
                    remaining = linger_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = list(self._queue)
                self._queue.clear()
            self._convert(batch)
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _convert(self, batch: list[Records]) -> None:
        for records in batch:
            try:
                self._converter.convert(records)
            except Exception:
                self.errors += 1
                log.exception("agent-finops otel: could not export %r", records)
