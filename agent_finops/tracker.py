"""The cost tracker: builds the priced span tree of each run and sends it to the ledger.

Framework-free, and it knows no framework: integrations drive it through the `RunGuard`
(agent_finops.guard), which calls `start_span` / `end_span` / `record_model_call` /
`record_tool_call` with the framework's own run ids. The tracker works out the trace, the
inherited tags, the node path and the price, and hands every record to its sinks
(agent_finops.sinks): first the ledger writer, which batches on a background thread so the
caller's hot path never waits on the database, then any others (e.g. an OpenTelemetry
exporter). `flush()` (and every read through the tracker) waits until everything emitted is
delivered.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from agent_finops.attribution import current_tags, merge_tags, validate_tags
from agent_finops.clock import fast_utcnow
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import (
    BUCKETS,
    DEFAULT_BUCKETS,
    CostBucket,
    CostEvent,
    DecisionRecord,
    EventKind,
    LeaseCharge,
    Ledger,
    RunRecord,
    SpanKind,
    SpanRecord,
    SpanStatus,
)
from agent_finops.pricing import ComputeRate, Cost, PriceBook
from agent_finops.reports import RunReport, load_run_report
from agent_finops.sinks import (
    LINGER,
    DurableLedgerSink,
    InlineLedgerSink,
    LedgerWriter,
    ProcessLedgerWriter,
    Records,
    RecordSink,
)
from agent_finops.usage import TokenUsage

__all__ = ["CostTracker"]

log = logging.getLogger("agent_finops")

NODE_SEPARATOR: Final = " > "
NO_FEE_SOURCE: Final = "no-fee"
"""`price_source` of a tool call whose tool has no configured fee (it cost nothing)."""


class CostTracker:
    """Priced span trees for runs, written to a ledger in the background.

    Thread-safe: spans and events may arrive from any thread or asyncio task.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        prices: PriceBook | None = None,
        tags: Mapping[str, str] | None = None,
        sinks: Sequence[RecordSink] = (),
        background: bool = True,
        durable: bool = False,
        linger: float = LINGER,
        dead_letter: str | os.PathLike[str] | None = None,
        flush_on_sigterm: bool = True,
        clock: Any = fast_utcnow,
        overhead: Mapping[str, str | Sequence[str]] | None = None,
        writer: str | None = None,
    ) -> None:
        """Track into `ledger`.

        Args:
            ledger: where runs, spans and events are persisted.
            prices: the price book (default: genai-prices catalog, no overrides).
            tags: tags applied to every run this tracker sees (lowest precedence).
            sinks: more places every record goes to, after the ledger (an OpenTelemetry
                exporter, a `MemorySink`...).
            background: write the ledger from a background thread (default) or inline
                (`InlineLedgerSink`: a failed write raises to the caller).
            durable: commit every record before the call that made it returns
                (`DurableLedgerSink`): a killed process loses nothing, at about half a
                millisecond per call on a SQLite file. Overrides `background`.
            linger: seconds the background writer waits after a record for more, to write
                one larger batch (default `LINGER`, 2 ms); about what a SIGKILL can lose.
            dead_letter: the JSONL file where records the ledger refuses as data are kept
                (default: next to a SQLite file ledger, else in the working directory).
            flush_on_sigterm: the background writer installs (once, main thread only) a
                SIGTERM handler that flushes, then chains to the previous handler or exits
                as the default would; False leaves SIGTERM alone (docs/scaling.md).
            clock: returns the current aware datetime; pass a fake in tests.
            overhead: calls whose tags match are orchestration overhead (routers,
                guardrails, retries): `{"agent": ["router", "guardrail"]}` (every key must
                match, a value or one of a list). They stay attributed to their run and
                tags, in the `overhead` cost bucket. A `cost_bucket` tag (`tokens`,
                `tools`, `compute`, `overhead`) on a call names its bucket outright.
            writer: who writes the ledger in the background: `thread` (default, a
                `LedgerWriter` in this process) or `process` (a `ProcessLedgerWriter`: a
                child process writes it, off this process's interpreter lock; for
                CPU-bound processes, docs/scaling.md). Default: the `AGENT_FINOPS_WRITER`
                environment variable, else `thread`. Ignored with `durable` or without
                `background`.
        """
        self.ledger = ledger
        self.prices = prices if prices is not None else PriceBook()
        self.tags = validate_tags(tags, source="CostTracker(tags=)")
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: dict[str, SpanRecord] = {}
        self._runs: dict[str, RunRecord] = {}
        self._outcomes: dict[str, tuple[SpanStatus, str]] = {}
        self._plumbing: set[str] = set()
        self._on_event: dict[str, CostEvent] = {}  # open model spans their event carries
        self._parents: set[str] = set()  # open model spans that opened a span of their own
        self._writer: LedgerWriter | ProcessLedgerWriter | DurableLedgerSink | None = None
        if durable:
            self._writer = DurableLedgerSink(ledger, dead_letter=dead_letter)
        elif background and _writer_kind(writer, ledger) == "process":
            self._writer = ProcessLedgerWriter(
                ledger, dead_letter=dead_letter, flush_on_sigterm=flush_on_sigterm
            )
        elif background:
            self._writer = LedgerWriter(
                ledger, linger=linger, dead_letter=dead_letter, flush_on_sigterm=flush_on_sigterm
            )
        self.sinks: tuple[RecordSink, ...] = (
            self._writer or InlineLedgerSink(ledger),
            *sinks,
        )
        self.unpriced = 0
        """Calls recorded with an unknown cost by this tracker."""
        self.overhead = _selector(overhead)
        self.policy_version: str | None = None
        """The cost policy's version, recorded on every event (a `RunGuard` sets it)."""

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
        thread_id: str | None = None,
        persist: bool = True,
    ) -> SpanRecord:
        """Open a span. A span whose parent is unknown starts a new run (trace).

        Args:
            span_id: the framework's id for this step (unique).
            parent_span_id: the enclosing step's id, if any.
            name: what to call it in reports.
            kind: run, node, agent, task, crew, chain, model or tool.
            node: the graph node or agent this span enters (extends the node path).
            tags: this span's own tags (they override inherited ones below it).
            thread_id: for a run: the resumable thread it belongs to (a LangGraph thread, a
                crew checkpoint), so a paused and resumed run reads as one story.
            persist: False for plumbing steps that add nothing to a report: they are not
                stored and their children hang from the nearest stored ancestor.
        """
        own = validate_tags(tags) if tags else None  # refused before anything is kept
        if (
            span_id is None
            or name is None
            or not _plain(span_id, name, parent_span_id, node, thread_id)
        ):
            span_id, name = _storable(span_id), _storable(name)
            parent_span_id, node = _storable_or_none(parent_span_id), _storable_or_none(node)
            thread_id = _storable_or_none(thread_id)
        now = self._clock()
        with self._lock:
            parent = self._open.get(parent_span_id) if parent_span_id else None
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
                run = RunRecord(
                    trace_id=span_id,
                    name=name,
                    started_at=now,
                    tags=span.tags,
                    thread_id=thread_id,
                )
                self._runs[span_id] = run
            else:
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
                if not persist:
                    self._plumbing.add(span_id)
                if parent.kind == "model":
                    self._parents.add(parent.span_id)  # its own row then says so
            self._open[span_id] = span
        if run is not None:
            self._write(runs=[run])
        return span

    def run(self, trace_id: str) -> RunRecord | None:
        """The open run with this trace id, if any."""
        return self._runs.get(_storable(trace_id))

    def set_outcome(self, trace_id: str, status: SpanStatus, message: str) -> None:
        """Record how a run ended when it ends without an exception (e.g. `stopped`)."""
        with self._lock:
            trace_id = _storable(trace_id)
            if trace_id in self._runs:
                self._outcomes.setdefault(trace_id, (status, _storable(message[:2000])))

    def span(self, span_id: str) -> SpanRecord | None:
        """The open span with this id, if any."""
        # Ids are stored as `_storable` made them: an id it keeps as it is is looked up
        # directly, and one it would change is never a key as it is (no NUL, encodable).
        span = self._open.get(span_id)
        return span if span is not None else self._open.get(_storable(span_id))

    def end_span(
        self, span_id: str, *, status: SpanStatus = "ok", error: BaseException | str | None = None
    ) -> SpanRecord | None:
        """Close a span; closing a run's root span closes the run."""
        span_id = _storable(span_id)
        now = self._clock()
        with self._lock:
            span = self._open.pop(span_id, None)
            if span is None:
                return None
            span.ended_at = now
            span.status = "error" if error is not None and status == "ok" else status
            span.error = None if error is None else _error_text(error)
            spans = [span]
            if span_id in self._plumbing:
                self._plumbing.discard(span_id)
                spans = []
            carrier = self._on_event.pop(span_id, None)
            if carrier is not None:
                if span_id in self._parents or span.status != "ok" or span.error is not None:
                    self._parents.discard(span_id)  # stored as a row: the row wins on read
                else:
                    span.ended_at, span.on_event = carrier.created_at, True
            elif span.kind == "model":
                self._parents.discard(span_id)
            if span.status == "interrupted" and span.parent_span_id is not None:
                # A step paused (interrupt) and the run ended without an error: the run paused.
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
                        self._on_event.pop(other_id, None)
                        self._parents.discard(other_id)
                        if other_id in self._plumbing:
                            self._plumbing.discard(other_id)
                            continue
                        other.status = "unfinished"
                        spans.append(other)
        self._write(runs=[run] if run else (), spans=spans)
        if self.prices.config.compute and span.kind != "run":
            rate = self.prices.compute_rate(span.name, span.tags)
            if rate is not None:
                seconds = (now - span.started_at).total_seconds()
                self._compute_event(span, rate, seconds, f"{span_id}:compute")
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
        cost: Cost | None = None,
    ) -> CostEvent:
        """Price and record one model call made inside span `span_id`.

        `usage=None` (the provider reported none) records the call with an unknown cost,
        never $0. `cost`: the integration already knows what the call cost (for example a
        response served from a cache cost nothing); its tokens are kept for the record.
        `event_id` defaults to the span id: recording it twice counts once.
        """
        if span_id is None or not _plain(span_id, event_id, model, provider):
            span_id, event_id = _storable(span_id), _storable_or_none(event_id)
            model, provider = _storable_or_none(model), _storable_or_none(provider)
        if cost is None:
            cost = self.prices.price_model_call(model, usage, provider=provider)
        u = usage or TokenUsage()
        span = self._span_or_orphan(span_id)
        # The call's span adds nothing to its event unless it opens spans of its own or
        # fails later: the event carries it, and it gets no row (`SpanRecord.on_event`).
        carries = (
            span.kind == "model"
            and span.parent_span_id is not None
            and (event_id is None or event_id == span_id)
            and span_id not in self._parents
        )
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
            cache_write_1h_tokens=u.cache_write_1h_tokens,
            output_tokens=u.output_tokens,
            reasoning_tokens=u.reasoning_tokens,
            usage_reported=usage is not None,
            bucket=self._bucket(span.tags, "tokens"),
            policy_version=self.policy_version,
        )
        if carries:
            event.span_parent_id = span.parent_span_id
            event.span_name = span.name
            event.span_started_at = span.started_at
            with self._lock:
                if span_id in self._open:  # recorded twice: the first event is kept
                    self._on_event.setdefault(span_id, event)
        return self._emit(event, cost)

    def record_tool_call(
        self,
        span_id: str,
        *,
        tool: str,
        output: Any = None,
        units: int | None = None,
        event_id: str | None = None,
    ) -> CostEvent:
        """Record one tool call with its fee ($0, source `no-fee`, for a tool without one)."""
        span_id, event_id, tool = _storable(span_id), _storable_or_none(event_id), _storable(tool)
        cost = self.prices.price_tool_call(tool, output=output, units=units)
        if cost is None:
            cost = Cost(amount=Decimal(0), source=NO_FEE_SOURCE, version="-")
        span = self._span_or_orphan(span_id)
        return self._fee_event(span, "tool", tool[:200], cost, event_id or span_id)

    def record_compute(
        self, span_id: str, *, resource: str, seconds: float, event_id: str | None = None
    ) -> CostEvent | None:
        """Price `seconds` on the compute rate named `resource`, as a compute event.

        For time not measured by a span (a sandbox billed by its provider, a GPU lease).
        Returns None (nothing recorded) if the price book has no rate of that name.
        """
        span_id, resource = _storable(span_id), _storable(resource)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= MAX_COMPUTE_SECONDS
        ):
            raise ConfigurationError(
                "compute seconds out of range",
                source="record_compute",
                field="seconds",
                value=repr(seconds)[:40],
                expected=f"a number of seconds from 0 to {MAX_COMPUTE_SECONDS:,}",
            )
        rate = next((r for r in self.prices.config.compute if r.name == resource), None)
        if rate is None:
            return None
        span = self._span_or_orphan(span_id)
        default_id = f"{span_id}:compute:{resource}"  # a span's own duration is `:compute`
        return self._compute_event(span, rate, float(seconds), event_id or default_id)

    def _compute_event(
        self, span: SpanRecord, rate: ComputeRate, seconds: float, event_id: str
    ) -> CostEvent:
        cost = self.prices.price_compute(rate, seconds)
        return self._fee_event(span, "compute", rate.name, cost, event_id)

    def _fee_event(
        self, span: SpanRecord, kind: EventKind, name: str, cost: Cost, event_id: str
    ) -> CostEvent:
        """A tool or compute event: priced per call or unit, no tokens."""
        event = CostEvent(
            event_id=event_id,
            trace_id=span.trace_id,
            span_id=span.span_id,
            kind=kind,
            name=name,
            provider=None,
            created_at=self._clock(),
            node_path=span.node_path,
            tags=span.tags,
            cost=cost.amount,
            price_source=cost.source,
            price_version=cost.version,
            model_ref=cost.model_ref,
            units=cost.units or 0,
            bucket=self._bucket(span.tags, DEFAULT_BUCKETS[kind]),
            policy_version=self.policy_version,
        )
        return self._emit(event, cost)

    def _bucket(self, tags: Mapping[str, str], default: CostBucket) -> CostBucket:
        named = _BUCKETS_BY_NAME.get(tags.get(BUCKET_TAG, ""))
        if named is not None:
            return named
        if self.overhead and all(tags.get(k) in v for k, v in self.overhead.items()):
            return "overhead"
        return default

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

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        """Queue budget-lease charges (a `ChargeSink`: the policy engine's store sends them).

        Inside `grouped()`, they join the group, so the ledger writes them in one
        transaction with the call's cost event.
        """
        if charges:
            self._write(charges=charges)

    def grouping(self) -> bool:
        """Whether this thread is inside `grouped()` (what it emits waits for the block's end)."""
        return getattr(self._local, "group", None) is not None

    def grouped(self) -> _Group:
        """Emit every record made on this thread inside the block as one group, at its end.

        A ledger writes a group in one transaction: the `RunGuard` records a call's cost
        event and settles its budgets inside one, so the event and its budget charges are
        durable together (a SIGKILL loses both or neither). Nested blocks join the outer one.
        A block that made no record emits nothing.
        """
        return _Group(self)

    def _write(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
        charges: Sequence[LeaseCharge] = (),
    ) -> None:
        if not (runs or spans or events or decisions or charges):
            return  # nothing to say (a plumbing span closed): no empty group for the sinks
        group: _Group | None = getattr(self._local, "group", None)
        if group is not None:
            if runs:
                group.runs = (*group.runs, *runs)
            if spans:
                group.spans = (*group.spans, *spans)
            if events:
                group.events = (*group.events, *events)
            if decisions:
                group.decisions = (*group.decisions, *decisions)
            if charges:
                group.charges = (*group.charges, *charges)
            return
        records = Records(
            runs=runs, spans=spans, events=events, decisions=decisions, charges=charges
        )
        for sink in self.sinks:
            sink.emit(records)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything recorded so far is in the ledger (and every sink)."""
        for sink in self.sinks:
            sink.flush(timeout)

    def close(self) -> None:
        """Flush and stop every sink (the ledger writer's thread included)."""
        for sink in self.sinks:
            sink.close()

    def report(self, run_id: str) -> RunReport:
        """Flush, then build the report of run `run_id` (full id or unique prefix)."""
        self.flush()
        return load_run_report(self.ledger, run_id)

    @property
    def backlog(self) -> int:
        """Record groups the background writer has not taken yet (0 without one).

        Stays near what arrives in a few milliseconds; one that keeps growing means the
        ledger does not keep up, and is what a SIGKILL would lose (docs/scaling.md).
        """
        if isinstance(self._writer, LedgerWriter | ProcessLedgerWriter):
            return self._writer.backlog
        return 0

    @property
    def write_errors(self) -> int:
        """Failed ledger write attempts so far (records are kept and retried, not dropped)."""
        return self._writer.errors if self._writer is not None else 0

    @property
    def dead_letter_path(self) -> Path | None:
        """The file keeping records the ledger refused (`agent_finops.sinks.read_dead_letters`).

        None when writes are inline (`background=False`): a refused write raises instead.
        """
        return self._writer.dead_letter_path if self._writer is not None else None

    @property
    def dead_lettered(self) -> int:
        """Records the ledger did not take, kept in the dead-letter file, so far."""
        return self._writer.dead_lettered if self._writer is not None else 0


class _Group:
    """`CostTracker.grouped()`: collects this thread's records, emits them as one group.

    A plain class rather than `@contextmanager`: it runs on every model and tool call.
    """

    __slots__ = ("_outer", "_tracker", "charges", "decisions", "events", "runs", "spans")

    runs: tuple[RunRecord, ...]
    spans: tuple[SpanRecord, ...]
    events: tuple[CostEvent, ...]
    decisions: tuple[DecisionRecord, ...]
    charges: tuple[LeaseCharge, ...]

    def __init__(self, tracker: CostTracker) -> None:
        self._tracker = tracker
        self._outer = False

    def __enter__(self) -> None:
        local = self._tracker._local
        if getattr(local, "group", None) is None:
            self._outer = True
            # Tuples, not lists: a group queued for the writer is a few objects fewer for
            # the garbage collector to promote and walk while it waits.
            self.runs = self.spans = self.events = self.decisions = self.charges = ()
            local.group = self
        # else: nested, the outer block collects (and emits) everything

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._outer:
            return
        self._outer = False
        self._tracker._local.group = None
        if self.runs or self.spans or self.events or self.decisions or self.charges:
            merged = Records(
                runs=self.runs,
                spans=self.spans,
                events=self.events,
                decisions=self.decisions,
                charges=self.charges,
            )
            for sink in self._tracker.sinks:
                sink.emit(merged)


MAX_COMPUTE_SECONDS: Final = 366 * 86_400
"""Longest compute time one event may bill (a year)."""
BUCKET_TAG = "cost_bucket"
_BUCKETS_BY_NAME: Final[dict[str, CostBucket]] = {b: b for b in BUCKETS}
"""A call tagged `cost_bucket` (tokens, tools, compute, overhead) lands in that bucket."""


def _selector(
    selector: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, frozenset[str]]:
    if not selector:
        return {}
    out: dict[str, frozenset[str]] = {}
    for key, values in selector.items():
        chosen = [values] if isinstance(values, str) else list(values)
        for value in chosen:
            validate_tags({key: value}, source="CostTracker(overhead=)")
        out[key] = frozenset(chosen)
    return out


def _join(path: str | None, node: str | None) -> str | None:
    if node is None:
        return path
    return node if path is None else f"{path}{NODE_SEPARATOR}{node}"


def _error_text(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return _storable(f"{type(error).__name__}: {error}"[:2000])
    return _storable(error[:2000])


def _plain(*texts: str | None) -> bool:
    """`_storable` keeps every one of `texts` as it is (the usual case: ASCII, no NUL).

    One call for all of a record's ids and names on the hot path, instead of one each.
    """
    for text in texts:
        if text is not None and not (text.isascii() and "\x00" not in text):
            return False
    return True


def _storable(text: str) -> str:
    r"""`text` as every ledger backend can store it: lone surrogates and NUL escaped.

    A lone surrogate (argv or file names that were not UTF-8, a broken decoder) cannot be
    encoded and would fail every retry of the batch holding it; PostgreSQL refuses NUL in
    text. Ids, names and error texts come from frameworks and exceptions, so they are
    escaped (`\ud800`, `\x00`), deterministically, rather than refused mid-run. Tags are
    the user's own input and are refused instead (`validate_tags`).
    """
    if "\x00" not in text:
        if text.isascii():
            return text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _storable_or_none(text: str | None) -> str | None:
    return None if text is None else _storable(text)


WRITERS: Final = ("thread", "process")
"""`CostTracker(writer=...)`: who writes the ledger in the background."""
WRITER_ENV: Final = "AGENT_FINOPS_WRITER"
"""The environment variable giving the default `writer` (`thread` when unset)."""


def _writer_kind(writer: str | None, ledger: Ledger) -> str:
    """`writer`, else the environment's default; a value we do not know is refused clearly.

    `process` from the environment on a ledger no child process can write (in memory, a
    wrapped engine, another backend) is `thread`, logged: the variable is set for a whole
    deployment, and some of its trackers may have such ledgers. Asked for explicitly, it
    raises (`ProcessLedgerWriter`).
    """
    source = "CostTracker(writer=)"
    if writer is None:
        writer = os.environ.get(WRITER_ENV) or "thread"
        source = WRITER_ENV
    if writer not in WRITERS:
        raise ConfigurationError(
            "unknown ledger writer",
            source=source,
            field="writer",
            value=writer,
            expected=" or ".join(WRITERS),
        )
    if writer == "process" and source == WRITER_ENV:
        why = ProcessLedgerWriter.unavailable(ledger)
        if why is not None:
            log.info("agent-finops: %s=process ignored for this tracker: %s", WRITER_ENV, why)
            return "thread"
    return writer
