"""Record sinks: where the tracker sends the runs, spans, cost events and decisions it builds.

The tracker never writes anywhere itself: it hands each group of records to every sink it
was given, on the caller's thread, and sinks decide how to deliver them. The ledger writer
(`LedgerWriter`, batching on a background thread) is always the first sink, because reports,
budgets and approvals read the ledger; others (an OpenTelemetry exporter, a log, a test
recorder) are added with `CostTracker(ledger, sinks=[...])` without touching the tracker.
"""

from agent_finops.sinks._base import Records, RecordSink
from agent_finops.sinks._ledger_writer import InlineLedgerSink, LedgerWriter
from agent_finops.sinks._memory import MemorySink

__all__ = ["InlineLedgerSink", "LedgerWriter", "MemorySink", "RecordSink", "Records"]
