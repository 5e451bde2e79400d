"""The ledger sinks: `LedgerWriter` (background), `DurableLedgerSink`, `InlineLedgerSink`.

The last two write on the caller's thread. What each can lose in a crash (docs/scaling.md,
"What a crash loses"): the `LedgerWriter` only what arrived in the last few milliseconds
before a SIGKILL (it lingers `LINGER` for a batch, then commits), nothing at a normal exit
(an `atexit` flush) or on SIGTERM (a chaining signal handler flushes first); the
`DurableLedgerSink` nothing: a group is committed, or kept in the dead-letter file and
fsynced, before `emit` returns. A record the ledger refuses as data never blocks the
others: it is isolated and kept in the dead-letter file
(`agent_finops.sinks.read_dead_letters`), never dropped with only a log line.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from agent_finops._foreground import ASIDE_PER_BATCH, allow_aside
from agent_finops.exceptions import LedgerError
from agent_finops.ledger import (
    CostEvent,
    DecisionRecord,
    LeaseCharge,
    Ledger,
    RunRecord,
    SpanRecord,
)
from agent_finops.sinks._base import Records
from agent_finops.sinks._dead_letter import DeadLetterFile, LedgerRecord, default_dead_letter_path
from agent_finops.sinks._sigterm import install_sigterm_flush

__all__ = [
    "BATCH_MAX",
    "FULL_WAIT",
    "LINGER",
    "MAX_QUEUED",
    "DurableLedgerSink",
    "InlineLedgerSink",
    "LedgerWriter",
    "flush_all_writers",
    "queue_full",
    "register_writer",
    "unregister_writer",
]

log = logging.getLogger("agent_finops")

BATCH_MAX: Final = 2000
"""Record groups written in one transaction at most."""
LINGER: Final = 0.002
"""Seconds the writer waits after the oldest queued group so it writes one larger batch.

It bounds what a SIGKILL can lose (the linger plus one commit: measured by
bench/bench_loss_window.py, docs/benchmarks.md); calls further apart than this are written
one transaction each whatever the linger, so a longer one only helps bursts."""
_RETRY_DELAYS: Final = (0.05, 0.2, 1.0)
_DURABLE_RETRY_DELAYS: Final = (0.05, 0.2)
"""A durable write waits this long for a locked or unreachable ledger, then keeps the records
in the dead-letter file (fsynced) rather than block the caller longer."""
_UNKNOWN_ERROR_TRIES: Final = 2
"""Tries for an error that is not a `LedgerError` (a backend bug?) before it counts as bad data."""
_EXIT_FLUSH_TIMEOUT: Final = 10.0
MAX_QUEUED: Final = 100_000
"""Record groups a `LedgerWriter` holds in memory at most (a group is one call's records).

A producer that outruns the ledger for long, or a ledger down for long, would otherwise
grow memory without limit. With the queue full, `emit` waits up to `FULL_WAIT` for the
writer to take a batch, then keeps the group in the dead-letter file (replayable, with
the reason) instead of memory."""
FULL_WAIT: Final = 1.0
"""Seconds `emit` waits for room in a full queue before keeping the group on disk."""


@dataclass(slots=True)
class _Batch:
    runs: list[RunRecord] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    events: list[CostEvent] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    charges: list[LeaseCharge] = field(default_factory=list)

    @classmethod
    def of(cls, groups: Iterable[Records]) -> _Batch:
        """Merge groups; a run or span sent twice is written in its last state."""
        runs: dict[str, RunRecord] = {}
        spans: dict[str, SpanRecord] = {}
        events: dict[str, CostEvent] = {}
        decisions: dict[str, DecisionRecord] = {}
        charges: list[LeaseCharge] = []  # not keyed: each is applied (once, with its event)
        for group in groups:
            runs.update((x.trace_id, x) for x in group.runs)
            spans.update((x.span_id, x) for x in group.spans)
            events.update((x.event_id, x) for x in group.events)
            decisions.update((x.decision_id, x) for x in group.decisions)
            charges.extend(group.charges)
        return cls(
            list(runs.values()),
            list(spans.values()),
            list(events.values()),
            list(decisions.values()),
            charges,
        )

    def __len__(self) -> int:
        return (
            len(self.runs)
            + len(self.spans)
            + len(self.events)
            + len(self.decisions)
            + len(self.charges)
        )

    def records(self) -> list[LedgerRecord]:
        return [*self.runs, *self.spans, *self.events, *self.decisions, *self.charges]

    def singles(self) -> list[_Batch]:
        """One batch per record; a charge stays with its event (one transaction, as before)."""
        by_event: dict[str | None, list[LeaseCharge]] = {}
        for c in self.charges:
            by_event.setdefault(c.event_id, []).append(c)
        events = {e.event_id for e in self.events}
        alone = [c for c in self.charges if c.event_id not in events]
        return (
            [_Batch(runs=[r]) for r in self.runs]
            + [_Batch(spans=[s]) for s in self.spans]
            + [_Batch(events=[e], charges=by_event.get(e.event_id, [])) for e in self.events]
            + [_Batch(decisions=[d]) for d in self.decisions]
            + [_Batch(charges=[c]) for c in alone]
        )

    def write_to(self, ledger: Ledger) -> None:
        ledger.write(
            runs=self.runs,
            spans=self.spans,
            events=self.events,
            decisions=self.decisions,
            charges=self.charges,
        )


class _Delivery:
    """Writes batches: retried while the ledger is unreachable, isolated when it refuses one.

    Shared by the background writer (patient: retries until the ledger is back or it is
    closed) and the durable sink (retries briefly, then keeps the records in the
    dead-letter file, fsynced, so the caller is never held long).
    """

    def __init__(
        self, ledger: Ledger, dead_letter: str | os.PathLike[str] | None, *, sync: bool
    ) -> None:
        self.ledger = ledger
        self.dead_letter = DeadLetterFile(
            dead_letter if dead_letter is not None else default_dead_letter_path(ledger)
        )
        self._sync = sync
        self.errors = 0
        """Failed write attempts so far (the records were kept and retried)."""
        self.dead_lettered = 0
        """Records the ledger did not take, kept in the dead-letter file."""
        self.dropped = 0
        """Records lost: neither the ledger nor the dead-letter file took them (each logged)."""

    @property
    def dead_letter_path(self) -> Path:
        """The JSONL file where records the ledger refused are kept (`read_dead_letters`)."""
        return self.dead_letter.path

    def _give_up(self, attempt: int) -> bool:
        """Whether to stop retrying a transient failure after `attempt` tries."""
        raise NotImplementedError

    def _delay(self, attempt: int) -> float:
        raise NotImplementedError

    def _deliver(self, batch: _Batch) -> None:
        attempt = 0
        while True:
            try:
                batch.write_to(self.ledger)
                return
            except Exception as exc:  # classified below; nothing escapes to the caller
                error: Exception = exc
            attempt += 1
            if _refused(error, attempt):
                if len(batch) > 1:  # isolate the record(s) the ledger refuses
                    for single in batch.singles():
                        self._deliver(single)
                else:
                    self.keep(batch.records(), f"the ledger refused the record: {error}")
                return
            self.errors += 1
            log.error("agent-finops ledger write failed (attempt %d): %s", attempt, error)
            if self._give_up(attempt):
                self.keep(batch.records(), f"not written (ledger unavailable): {error}")
                return
            time.sleep(self._delay(attempt))

    def keep(self, records: list[LedgerRecord], error: str) -> None:
        """Put records in the dead-letter file (or, if even that fails, count them dropped)."""
        if not records:
            return
        if self.dead_letter.append(records, error, sync=self._sync):
            self.dead_lettered += len(records)
        else:
            self.dropped += len(records)


def queue_full(max_queued: int, dead_letter: Path) -> str:
    """Log that a writer's queue is full; the reason a group kept for it is filed under."""
    log.warning(
        "agent-finops: the writer's queue is full (%d groups): the ledger is not keeping up; "
        "keeping a group in %s",
        max_queued,
        dead_letter,
    )
    return f"the writer's queue was full ({max_queued} groups): the ledger did not keep up"


def _refused(exc: Exception, attempt: int) -> bool:
    """A write error that retrying cannot fix (the ledger refused the data itself)."""
    if isinstance(exc, LedgerError):
        return not exc.retryable
    return attempt >= _UNKNOWN_ERROR_TRIES


class InlineLedgerSink:
    """Writes each group in its own transaction on the caller's thread (no background)."""

    def __init__(self, ledger: Ledger) -> None:
        """Write into `ledger`."""
        self.ledger = ledger

    def emit(self, records: Records) -> None:
        """Write now; a failure raises `LedgerError` to the caller."""
        self.ledger.write(
            runs=list(records.runs),
            spans=list(records.spans),
            events=list(records.events),
            decisions=list(records.decisions),
            charges=list(records.charges),
        )

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is pending."""

    def close(self) -> None:
        """Nothing to release (the ledger is the caller's)."""


class DurableLedgerSink(_Delivery):
    """Commits each group before `emit` returns: nothing is lost if the process is killed.

    A locked or unreachable ledger is retried for about a quarter of a second; then the
    group is appended to the dead-letter file and fsynced, so the record is on disk either
    way (`read_dead_letters`). A record the ledger refuses as data goes there too, and the
    rest of its group is written. `emit` never raises for a delivery failure.

    Each group is one transaction on the caller's thread (about two per model call): durable
    tracking costs about half a millisecond more per call than the background writer on a
    SQLite file (docs/benchmarks.md).
    """

    def __init__(
        self, ledger: Ledger, *, dead_letter: str | os.PathLike[str] | None = None
    ) -> None:
        """Write into `ledger`; keep refused records in `dead_letter` (default_dead_letter_path)."""
        super().__init__(ledger, dead_letter, sync=True)

    def _give_up(self, attempt: int) -> bool:
        return attempt > len(_DURABLE_RETRY_DELAYS)

    def _delay(self, attempt: int) -> float:
        return _DURABLE_RETRY_DELAYS[attempt - 1]

    def emit(self, records: Records) -> None:
        """Write now, in one transaction (or keep in the dead-letter file); never raises."""
        if records:
            self._deliver(_Batch.of((records,)))

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is pending."""

    def close(self) -> None:
        """Nothing to release (the ledger is the caller's)."""


class LedgerWriter(_Delivery):
    """One daemon thread that drains queued records into the ledger in batched transactions.

    Records are never dropped for a transient fault: a failed batch is kept and retried with
    back-off until the ledger is back. A batch the ledger refuses as data
    (`LedgerError.retryable` false) is written record by record, so one poison record cannot
    block the others, and the refused record is kept in the dead-letter file with its error.
    Records still unwritten when the writer closes (or the interpreter exits with the ledger
    unreachable) go there too.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        linger: float = LINGER,
        dead_letter: str | os.PathLike[str] | None = None,
        flush_on_sigterm: bool = True,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        """Start the writer thread for `ledger`.

        Args:
            ledger: where records go.
            linger: seconds to wait after the oldest queued group for more, to write one
                larger batch; also about what a SIGKILL can lose.
            dead_letter: the JSONL file for records the ledger refuses (default: next to a
                SQLite file ledger, else `agent-finops-dead-letter.jsonl` in the working
                directory).
            flush_on_sigterm: install (once, from the main thread) a SIGTERM handler that
                flushes every writer, then chains to the previous handler or exits as the
                default would. False leaves SIGTERM alone.
            max_queued: record groups held in memory at most (`MAX_QUEUED`); beyond, a
                group waits up to `FULL_WAIT` for room, then goes to the dead-letter file.
        """
        super().__init__(ledger, dead_letter, sync=False)
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ValueError(f"max_queued must be a positive int, got {max_queued!r}")
        self.max_queued = max_queued
        self.overflowed = 0
        """Groups kept in the dead-letter file because the queue was full."""
        self.linger = linger
        self._cond = threading.Condition(threading.RLock())  # re-entrant: the SIGTERM flush
        self._queue: deque[Records] = deque()
        self._oldest = 0.0
        self._queued = 0
        self._done = 0
        self._closed = False
        self._flushing = 0
        self.batches = 0
        """Transactions written so far (records per transaction = throughput / this)."""
        self._thread = threading.Thread(target=self._run, name="agent-finops-writer", daemon=True)
        self._thread.start()
        _live_writers.add(self)
        if flush_on_sigterm:
            install_sigterm_flush(flush_all_writers)

    @property
    def backlog(self) -> int:
        """Record groups queued and not yet taken by the writer thread (what it is behind by).

        It stays near what arrives during one linger and one write; one that keeps growing
        means the ledger does not keep up (and is what a SIGKILL would lose).
        """
        return len(self._queue)

    def emit(self, records: Records) -> None:
        """Queue a group; the writer thread wakes for the first one.

        With `max_queued` groups already queued, wait up to `FULL_WAIT` for room, then keep
        the group in the dead-letter file (counted in `overflowed`): memory stays bounded
        and nothing is dropped.
        """
        with self._cond:
            if len(self._queue) >= self.max_queued and not self._on_writer_thread():
                deadline = time.monotonic() + FULL_WAIT
                self._cond.notify_all()
                while len(self._queue) >= self.max_queued and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            full = len(self._queue) >= self.max_queued
            if not full:
                self._enqueue(records)
        if full:
            self.overflowed += 1
            self.keep(
                _Batch.of((records,)).records(), queue_full(self.max_queued, self.dead_letter_path)
            )

    def _on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _enqueue(self, records: Records) -> None:
        # Under self._cond.
        self._queue.append(records)
        self._queued += 1
        if len(self._queue) == 1:
            self._oldest = time.monotonic()
            self._cond.notify_all()
        elif len(self._queue) >= BATCH_MAX:
            self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything queued so far is in the ledger (or the dead-letter file)."""
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

    def close(self, timeout: float = 30.0) -> None:
        """Flush (for up to `timeout` seconds), then stop the thread.

        What the ledger has not taken by then (it is unreachable) is kept in the
        dead-letter file rather than lost; that is logged, not raised.
        """
        try:
            self.flush(timeout=timeout)
        except LedgerError as exc:
            log.error("agent-finops: %s; keeping them in %s", exc, self.dead_letter_path)
        finally:
            self._stop("not written before the writer closed")

    def _stop(self, reason: str) -> None:
        with self._cond:
            self._closed = True  # the thread drains the queue, trying each batch once more
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._done += len(left)
            self._cond.notify_all()
        if left:
            self.keep(_Batch.of(left).records(), reason)
        _live_writers.discard(self)

    def _give_up(self, attempt: int) -> bool:
        with self._cond:
            return self._closed

    def _delay(self, attempt: int) -> float:
        return _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS)) - 1]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                linger_until = self._oldest + self.linger
                while len(self._queue) < BATCH_MAX and not (self._closed or self._flushing):
                    remaining = linger_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                groups = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]
                self._oldest = time.monotonic()  # what arrives during the write waits from now
                if len(self._queue) + len(groups) >= self.max_queued:
                    self._cond.notify_all()  # room for producers waiting on a full queue
            try:
                # A budget call in flight answers first (`agent_finops._foreground`): the
                # ledger's write steps aside between its units of work, within this.
                allow_aside(ASIDE_PER_BATCH)
                self._deliver(_Batch.of(groups))
                self.batches += 1
            except BaseException as exc:  # pragma: no cover - a bug: never wedge the flushers
                log.exception("agent-finops writer failed on a batch: %s", exc)
                self.keep(_Batch.of(groups).records(), f"writer error: {exc!r}")
            with self._cond:
                self._done += len(groups)
                self._cond.notify_all()


class _Writer(Protocol):
    def flush(self, timeout: float | None = ...) -> None: ...

    def _stop(self, reason: str) -> None: ...


_live_writers: weakref.WeakSet[_Writer] = weakref.WeakSet()


def register_writer(writer: _Writer) -> None:
    """Flush `writer` with the others on SIGTERM and at exit (until it is collected)."""
    _live_writers.add(writer)


def unregister_writer(writer: _Writer) -> None:
    """`writer` is closed: no flush on SIGTERM or at exit."""
    _live_writers.discard(writer)


def flush_all_writers(timeout: float) -> None:
    """Flush every live `LedgerWriter` within `timeout` seconds in all (used on SIGTERM)."""
    deadline = time.monotonic() + timeout
    for writer in list(_live_writers):
        try:
            writer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except LedgerError as exc:
            log.error("agent-finops: %s", exc)


@atexit.register
def _flush_at_exit() -> None:
    for writer in list(_live_writers):
        try:
            writer.flush(timeout=_EXIT_FLUSH_TIMEOUT)
        except LedgerError as exc:
            log.error("agent-finops: %s", exc)
            writer._stop("not written before the interpreter exited")
