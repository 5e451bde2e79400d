"""Record sinks: where the tracker sends the runs, spans, cost events and decisions it builds.

The tracker never writes anywhere itself: it hands each group of records to every sink it
was given, on the caller's thread, and sinks decide how to deliver them. The ledger writer
(`LedgerWriter`, batching on a background thread; `ProcessLedgerWriter`, the same from a
child process, with `CostTracker(writer="process")`; or `DurableLedgerSink`, committing before
each call returns, with `CostTracker(durable=True)`) is always the first sink, because
reports, budgets and approvals read the ledger; others (an OpenTelemetry exporter, a log, a test
recorder) are added with `CostTracker(ledger, sinks=[...])` without touching the tracker.

Records the ledger refuses as data are kept in a dead-letter JSONL file, never dropped:
`read_dead_letters(tracker.dead_letter_path)` gives them back (docs/scaling.md).
"""

from agent_finops.sinks._base import Records, RecordSink
from agent_finops.sinks._charge_writer import ChargeWriter
from agent_finops.sinks._dead_letter import (
    DEAD_LETTER_NAME,
    DeadLetter,
    default_dead_letter_path,
    read_dead_letters,
)
from agent_finops.sinks._ledger_writer import (
    FULL_WAIT,
    LINGER,
    MAX_QUEUED,
    DurableLedgerSink,
    InlineLedgerSink,
    LedgerWriter,
    flush_all_writers,
)
from agent_finops.sinks._memory import MemorySink
from agent_finops.sinks._process_writer import ProcessLedgerWriter
from agent_finops.sinks._sigterm import SIGTERM_FLUSH_TIMEOUT

__all__ = [
    # the interface
    "RecordSink",
    "Records",
    # sinks
    "LedgerWriter",
    "ProcessLedgerWriter",
    "DurableLedgerSink",
    "InlineLedgerSink",
    "MemorySink",
    "ChargeWriter",
    "LINGER",
    "MAX_QUEUED",
    "FULL_WAIT",
    "SIGTERM_FLUSH_TIMEOUT",
    "flush_all_writers",
    # records the ledger refused
    "DeadLetter",
    "read_dead_letters",
    "default_dead_letter_path",
    "DEAD_LETTER_NAME",
]
