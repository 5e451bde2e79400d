"""The `RecordSink` interface and the `Records` group the tracker hands to every sink."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent_finops.ledger import CostEvent, DecisionRecord, LeaseCharge, RunRecord, SpanRecord

__all__ = ["RecordSink", "Records"]


@dataclass(frozen=True, slots=True)
class Records:
    """Records produced together (for example a closed span and its run).

    A run or span may be sent more than once as its state changes (opened, then closed):
    the later one replaces the earlier. Events and decisions are sent once; their ids make
    a repeat harmless.
    """

    runs: Sequence[RunRecord] = ()
    spans: Sequence[SpanRecord] = ()
    events: Sequence[CostEvent] = ()
    decisions: Sequence[DecisionRecord] = ()
    charges: Sequence[LeaseCharge] = ()
    """Budget-lease charges of the calls whose events are in the group (a ledger writes them
    in one transaction with those events; other sinks ignore them)."""

    def __bool__(self) -> bool:
        """Whether there is anything in the group."""
        return bool(self.runs or self.spans or self.events or self.decisions or self.charges)


@runtime_checkable
class RecordSink(Protocol):
    """Receives every record the tracker builds.

    `emit` is called on the hot path of the user's run (every model and tool call): it
    must be quick (queue, don't do I/O) and must not raise for a delivery failure — keep the
    records and retry, or report them, but never lose them silently.
    """

    def emit(self, records: Records) -> None:
        """Take a group of records."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything emitted so far is delivered (or raise on timeout)."""
        ...

    def close(self) -> None:
        """Flush, then release resources; no `emit` follows."""
        ...
