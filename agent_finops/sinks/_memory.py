"""`MemorySink`: keeps every record in lists (tests, notebooks, custom exporters)."""

from __future__ import annotations

import threading

from agent_finops.ledger import CostEvent, DecisionRecord, RunRecord, SpanRecord
from agent_finops.sinks._base import Records

__all__ = ["MemorySink"]


class MemorySink:
    """A sink that appends what it receives to `runs`, `spans`, `events`, `decisions`."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self.runs: list[RunRecord] = []
        self.spans: list[SpanRecord] = []
        self.events: list[CostEvent] = []
        self.decisions: list[DecisionRecord] = []
        self.closed = False

    def emit(self, records: Records) -> None:
        """Append the records."""
        with self._lock:
            self.runs.extend(records.runs)
            self.spans.extend(records.spans)
            self.events.extend(records.events)
            self.decisions.extend(records.decisions)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""

    def close(self) -> None:
        """Mark closed."""
        self.closed = True
