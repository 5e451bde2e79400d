"""The ledger sinks: `LedgerWriter` (batched, background thread) and `InlineLedgerSink`."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from typing import Any, Final

from agent_finops.exceptions import LedgerError
from agent_finops.ledger import CostEvent, DecisionRecord, Ledger, RunRecord, SpanRecord
from agent_finops.sinks._base import Records

__all__ = ["InlineLedgerSink", "LedgerWriter"]

log = logging.getLogger("agent_finops")

BATCH_MAX: Final = 500
"""Record groups written in one transaction at most."""
LINGER: Final = 0.05
"""Seconds the writer waits after the first queued group so it writes one larger batch
(fewer transactions, and fewer wake-ups competing for the GIL with the caller's graph)."""
_RETRY_DELAYS: Final = (0.05, 0.2, 1.0)


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
        )

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is pending."""

    def close(self) -> None:
        """Nothing to release (the ledger is the caller's)."""


class LedgerWriter:
    """One daemon thread that drains queued records into the ledger in batched transactions.

    Records are never dropped for a transient fault: a failed batch is kept and retried with
    back-off. A batch the database refuses as data (`LedgerError.retryable` false) is
    written record by record so one poison record cannot block the others.
    """

    def __init__(self, ledger: Ledger) -> None:
        """Start the writer thread for `ledger`."""
        self.ledger = ledger
        self._cond = threading.Condition()
        self._queue: deque[Records] = deque()
        self._queued = 0
        self._done = 0
        self._closed = False
        self._flushing = 0
        self.errors = 0
        """Failed write attempts so far (the records are kept and retried)."""
        self.dropped = 0
        """Records the database refused as data (each logged with the record)."""
        self._thread = threading.Thread(target=self._run, name="agent-finops-writer", daemon=True)
        self._thread.start()
        _live_writers.add(self)

    def emit(self, records: Records) -> None:
        """Queue a group; the writer thread wakes for the first one."""
        with self._cond:
            self._queue.append(records)
            self._queued += 1
            if len(self._queue) == 1 or len(self._queue) >= BATCH_MAX:
                self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until everything queued so far is in the ledger."""
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
        """Flush, then stop the thread."""
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
                linger_until = time.monotonic() + LINGER
                while len(self._queue) < BATCH_MAX and not (self._closed or self._flushing):
                    remaining = linger_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]
            runs: dict[str, RunRecord] = {}
            spans: dict[str, SpanRecord] = {}
            events: dict[str, CostEvent] = {}
            decisions: dict[str, DecisionRecord] = {}
            for group in batch:
                runs.update((x.trace_id, x) for x in group.runs)
                spans.update((x.span_id, x) for x in group.spans)
                events.update((x.event_id, x) for x in group.events)
                decisions.update((x.decision_id, x) for x in group.decisions)
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
                self.ledger.write(runs=runs, spans=spans, events=events, decisions=decisions)
                return
            except Exception as exc:  # keep records; retry until the ledger is back
                if _is_bad_data(exc):
                    # Not transient: retrying the batch would wedge the writer forever.
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
                self.ledger.write(**batch)
            except Exception as exc:
                if not _is_bad_data(exc):
                    raise
                self.dropped += 1
                log.error("agent-finops: the ledger refused %r, dropped: %s", record, exc)


def _is_bad_data(exc: BaseException) -> bool:
    """A write error that retrying cannot fix (the ledger refused the record itself)."""
    return isinstance(exc, LedgerError) and not exc.retryable


_live_writers: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for writer in list(_live_writers):
        try:
            writer.flush(timeout=10.0)
        except LedgerError as exc:  # pragma: no cover - exit path
            log.error("agent-finops: %s", exc)
