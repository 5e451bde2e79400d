"""The cost tracker: builds the priced span tree of each run and sends it to the ledger.

Framework-free. Integrations (the LangChain/LangGraph callback handler, CrewAI hooks, or your
own code) call `start_span` / `end_span` / `record_model_call` / `record_tool_call` with the
framework's own run ids; the tracker works out the trace, the inherited tags, the LangGraph
node path and the price, and queues records for a background writer so the caller's hot path
never waits on the database. `flush()` (and every read through the tracker) waits until
everything queued is durable.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from agent_finops.attribution import current_tags, merge_tags, validate_tags
from agent_finops.exceptions import LedgerError
from agent_finops.ledger import (
    CostEvent,
    DecisionRecord,
    RunRecord,
    SpanKind,
    SpanRecord,
    SpanStatus,
    SQLLedger,
)
from agent_finops.pricing import Cost, PriceBook
from agent_finops.reports import RunReport, load_run_report
from agent_finops.usage import TokenUsage

__all__ = ["CostTracker"]

log = logging.getLogger("agent_finops")

NODE_SEPARATOR: Final = " > "
LLM_CACHE_SOURCE: Final = "llm-cache"
"""`price_source` of a call LangChain answered from its LLM cache (cost 0)."""
_BATCH_MAX: Final = 500
_LINGER: Final = 0.05
"""Seconds the writer waits after the first queued record so it writes one larger batch
(fewer transactions, and fewer wake-ups competing for the GIL with the caller's graph)."""
_RETRY_DELAYS: Final = (0.05, 0.2, 1.0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CostTracker:
    """Priced span trees for runs, written to a ledger in the background.

    Thread-safe: spans and events may arrive from any thread or asyncio task.
    """

    def __init__(
        self,
        ledger: SQLLedger,
        *,
        prices: PriceBook | None = None,
        tags: Mapping[str, str] | None = None,
        background: bool = True,
        clock: Any = _utcnow,
    ) -> None:
        """Track into `ledger`.

        Args:
            ledger: where runs, spans and events are persisted.
            prices: the price book (default: genai-prices catalog, no overrides).
            tags: tags applied to every run this tracker sees (lowest precedence).
            background: write from a background thread (default) or inline on each call.
            clock: returns the current aware datetime; pass a fake in tests.
        """
        self.ledger = ledger
        self.prices = prices if prices is not None else PriceBook()
        self.tags = validate_tags(tags, source="CostTracker(tags=)")
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, SpanRecord] = {}
        self._runs: dict[str, RunRecord] = {}
        self._outcomes: dict[str, tuple[SpanStatus, str]] = {}
        self._plumbing: set[str] = set()
        self._writer = _BatchWriter(ledger) if background else None
        self.unpriced = 0
        """Calls recorded with an unknown cost by this tracker."""

    # -- spans --------------------------------------------------------------------------

    def start_span(
        self,
        span_id: str,
        *,
        parent_span_id: str | None,
        name: str,
        kind: SpanKind,
        node: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> SpanRecord:
        """Open a span. A span whose parent is unknown starts a new run (trace)."""
        now = self._clock()
        with self._lock:
            parent = self._open.get(parent_span_id) if parent_span_id else None
            if tags and parent is not None and _inherited(tags, parent.tags):
                # Frameworks pass a run's metadata down to every child (LangChain does):
                # tags the parent already has are inherited, not this span's own.
                tags = None
            own = validate_tags(tags) if tags else None
            if parent is None:
                span = SpanRecord(
                    span_id=span_id,
                    trace_id=span_id,
                    parent_span_id=None,
                    name=name,
                    kind="run",
                    node_path=node,
                    started_at=now,
                    tags=merge_tags(self.tags, current_tags(), own),
                )
                run = RunRecord(trace_id=span_id, name=name, started_at=now, tags=span.tags)
                self._runs[span_id] = run
            else:
                # Plumbing chains (routing functions, sequences, channel writes) are not
                # persisted: their children hang from the nearest persisted ancestor.
                anchor = (
                    parent.parent_span_id if parent.span_id in self._plumbing else parent.span_id
                )
                span = SpanRecord(
                    span_id=span_id,
                    trace_id=parent.trace_id,
                    parent_span_id=anchor,
                    name=name,
                    kind=kind,
                    node_path=_join(parent.node_path, node),
                    started_at=now,
                    tags=merge_tags(parent.tags, own) if own else parent.tags,
                )
                run = None
                if kind == "chain" and not own:
                    self._plumbing.add(span_id)
            self._open[span_id] = span
        if run is not None:
            self._write(runs=[run])
        return span

    def set_outcome(self, trace_id: str, status: SpanStatus, message: str) -> None:
        """Record how a run ended when it ends without an exception (e.g. `stopped`)."""
        with self._lock:
            if trace_id in self._runs:
                self._outcomes.setdefault(trace_id, (status, message[:2000]))

    def span(self, span_id: str) -> SpanRecord | None:
        """The open span with this id, if any."""
        return self._open.get(span_id)

    def end_span(
        self, span_id: str, *, status: SpanStatus = "ok", error: BaseException | str | None = None
    ) -> SpanRecord | None:
        """Close a span; closing a run's root span closes the run."""
        now = self._clock()
        with self._lock:
            span = self._open.pop(span_id, None)
            if span is None:
                return None
            span.ended_at = now
            span.status = "error" if error is not None and status == "ok" else status
            span.error = _error_text(error)
            spans = [span]
            if span_id in self._plumbing:
                self._plumbing.discard(span_id)
                spans = []
            if span.status == "interrupted" and span.parent_span_id is not None:
                # LangGraph ends the root normally after an interrupt: remember the pause.
                self._outcomes.setdefault(span.trace_id, ("interrupted", ""))
            run = self._runs.pop(span_id, None) if span.parent_span_id is None else None
            if run is not None:
                outcome = self._outcomes.pop(span_id, None)
                if outcome is not None and span.status in ("ok", "interrupted"):
                    span.status, span.error = outcome[0], outcome[1] or None
                run.ended_at, run.status, run.error = now, span.status, span.error
                # Spans still open under this run never got an end event: keep them, marked.
                for other_id, other in list(self._open.items()):
                    if other.trace_id == span.trace_id:
                        del self._open[other_id]
                        if other_id in self._plumbing:
                            self._plumbing.discard(other_id)
                            continue
                        other.status = "unfinished"
                        spans.append(other)
        self._write(runs=[run] if run else (), spans=spans)
        return span

    # -- cost events --------------------------------------------------------------------

    def record_model_call(
        self,
        span_id: str,
        *,
        model: str | None,
        usage: TokenUsage | None,
        provider: str | None = None,
        event_id: str | None = None,
        cached: bool = False,
    ) -> CostEvent:
        """Price and record one model call made inside span `span_id`.

        `usage=None` (the provider reported none) records the call with an unknown cost,
        never $0. `cached=True`: answered from LangChain's LLM cache, so it cost nothing
        (its tokens are kept for the record). `event_id` defaults to the span id: recording
        it twice counts once.
        """
        if cached:
            cost = Cost(amount=Decimal(0), source=LLM_CACHE_SOURCE, version="-", model_ref=model)
        else:
            cost = self.prices.price_model_call(model, usage, provider=provider)
        u = usage or TokenUsage()
        span = self._span_or_orphan(span_id)
        event = CostEvent(
            event_id=event_id or span_id,
            trace_id=span.trace_id,
            span_id=span_id,
            kind="model",
            name=(model or "unknown")[:200],
            provider=provider,
            created_at=self._clock(),
            node_path=span.node_path,
            tags=span.tags,
            cost=cost.amount,
            price_source=cost.source,
            price_version=cost.version,
            model_ref=cost.model_ref,
            uncached_input_tokens=u.uncached_input_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
            reasoning_tokens=u.reasoning_tokens,
            usage_reported=usage is not None,
        )
        return self._emit(event, cost)

    def record_tool_call(
        self,
        span_id: str,
        *,
        tool: str,
        output: Any = None,
        units: int | None = None,
        event_id: str | None = None,
    ) -> CostEvent | None:
        """Record the fee of one tool call; None when the tool has no configured fee."""
        cost = self.prices.price_tool_call(tool, output=output, units=units)
        if cost is None:
            return None
        span = self._span_or_orphan(span_id)
        event = CostEvent(
            event_id=event_id or span_id,
            trace_id=span.trace_id,
            span_id=span_id,
            kind="tool",
            name=tool[:200],
            provider=None,
            created_at=self._clock(),
            node_path=span.node_path,
            tags=span.tags,
            cost=cost.amount,
            price_source=cost.source,
            price_version=cost.version,
            model_ref=cost.model_ref,
            units=cost.units or 0,
        )
        return self._emit(event, cost)

    def _emit(self, event: CostEvent, cost: Cost) -> CostEvent:
        """Queue the event, then (never before: nothing is lost) report an unknown price."""
        self._write(events=[event])
        if cost.amount is None:
            with self._lock:
                self.unpriced += 1
            self.prices.report_unpriced(cost, stacklevel=3)
        return event

    def _span_or_orphan(self, span_id: str) -> SpanRecord:
        span = self._open.get(span_id)
        if span is not None:
            return span
        # A call reported without a span we saw start (handler attached mid-run): it is
        # still recorded, as a run of its own, so no usage is lost.
        return self.start_span(span_id, parent_span_id=None, name="orphan", kind="model")

    # -- persistence --------------------------------------------------------------------

    def record_decision(self, decision: DecisionRecord) -> None:
        """Queue a policy decision for the ledger (same path and guarantees as events)."""
        self._write(decisions=[decision])

    def _write(
        self,
        *,
        runs: Any = (),
        spans: Any = (),
        events: Any = (),
        decisions: Any = (),
    ) -> None:
        if self._writer is not None:
            self._writer.put(runs, spans, events, decisions)
        else:
            self.ledger.write(
                runs=list(runs), spans=list(spans), events=list(events), decisions=list(decisions)
            )

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything recorded so far is in the ledger."""
        if self._writer is not None:
            self._writer.flush(timeout)

    def close(self) -> None:
        """Flush and stop the background writer."""
        if self._writer is not None:
            self._writer.close()

    def report(self, run_id: str) -> RunReport:
        """Flush, then build the report of run `run_id` (full id or unique prefix)."""
        self.flush()
        return load_run_report(self.ledger, run_id)

    @property
    def write_errors(self) -> int:
        """Failed ledger write attempts so far (records are kept and retried, not dropped)."""
        return self._writer.errors if self._writer is not None else 0


def _inherited(tags: Mapping[str, Any], parent: Mapping[str, str]) -> bool:
    return all(parent.get(k) == v for k, v in tags.items())


def _join(path: str | None, node: str | None) -> str | None:
    if node is None:
        return path
    return node if path is None else f"{path}{NODE_SEPARATOR}{node}"


def _error_text(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"[:2000]
    return error[:2000]


class _BatchWriter:
    """One daemon thread that drains queued records into the ledger in batched transactions."""

    def __init__(self, ledger: SQLLedger) -> None:
        self._ledger = ledger
        self._cond = threading.Condition()
        self._queue: deque[tuple[Any, Any, Any, Any]] = deque()
        self._queued = 0
        self._done = 0
        self._closed = False
        self._flushing = 0
        self.errors = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="agent-finops-writer", daemon=True)
        self._thread.start()
        _live_writers.add(self)

    def put(self, runs: Any, spans: Any, events: Any, decisions: Any) -> None:
        with self._cond:
            self._queue.append((runs, spans, events, decisions))
            self._queued += 1
            if len(self._queue) == 1 or len(self._queue) >= _BATCH_MAX:
                self._cond.notify_all()

    def flush(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._flushing += 1  # the writer stops lingering
            self._cond.notify_all()
            try:
                while self._done < target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise LedgerError(
                            f"ledger flush timed out with {target - self._done} batches "
                            f"pending ({self.errors} write errors so far); records are kept "
                            "in memory"
                        )
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        try:
            self.flush(timeout=30.0)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=5.0)
            _live_writers.discard(self)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                linger_until = time.monotonic() + _LINGER
                while len(self._queue) < _BATCH_MAX and not (self._closed or self._flushing):
                    remaining = linger_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), _BATCH_MAX))]
            runs: dict[str, RunRecord] = {}
            spans: dict[str, SpanRecord] = {}
            events: dict[str, CostEvent] = {}
            decisions: dict[str, DecisionRecord] = {}
            for r, s, e, d in batch:
                runs.update((x.trace_id, x) for x in r)
                spans.update((x.span_id, x) for x in s)
                events.update((x.event_id, x) for x in e)
                decisions.update((x.decision_id, x) for x in d)
            self._write_with_retry(
                list(runs.values()),
                list(spans.values()),
                list(events.values()),
                list(decisions.values()),
            )
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _write_with_retry(
        self,
        runs: list[RunRecord],
        spans: list[SpanRecord],
        events: list[CostEvent],
        decisions: list[DecisionRecord],
    ) -> None:
        attempt = 0
        while True:
            try:
                self._ledger.write(runs=runs, spans=spans, events=events, decisions=decisions)
                return
            except Exception as exc:  # keep records; retry until the ledger is back
                if _is_bad_data(exc):
                    # Not transient: retrying the batch would wedge the writer forever.
                    # Write record by record and drop (loudly) only the ones refused.
                    self._write_one_by_one(runs, spans, events, decisions)
                    return
                self.errors += 1
                delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                attempt += 1
                log.error("agent-finops ledger write failed (attempt %d): %s", attempt, exc)
                with self._cond:
                    if self._closed:
                        log.error(
                            "agent-finops: giving up at close; %d runs, %d spans, %d events "
                            "not written",
                            len(runs),
                            len(spans),
                            len(events),
                        )
                        return
                time.sleep(delay)

    def _write_one_by_one(
        self,
        runs: list[RunRecord],
        spans: list[SpanRecord],
        events: list[CostEvent],
        decisions: list[DecisionRecord],
    ) -> None:
        batches: list[dict[str, Any]] = (
            [{"runs": [r]} for r in runs]
            + [{"spans": [s]} for s in spans]
            + [{"events": [e]} for e in events]
            + [{"decisions": [d]} for d in decisions]
        )
        for batch in batches:
            record = next(iter(batch.values()))[0]
            try:
                self._ledger.write(**batch)
            except Exception as exc:
                if not _is_bad_data(exc):
                    raise
                self.dropped += 1
                log.error("agent-finops: the ledger refused %r, dropped: %s", record, exc)


def _is_bad_data(exc: BaseException) -> bool:
    """A write error that retrying cannot fix (the ledger refused the record itself)."""
    return isinstance(exc, LedgerError) and not exc.retryable


_live_writers: weakref.WeakSet[_BatchWriter] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for writer in list(_live_writers):
        try:
            writer.flush(timeout=10.0)
        except LedgerError as exc:  # pragma: no cover - exit path
            log.error("agent-finops: %s", exc)
