"""`ChargeWriter`: budget-lease charges written at settle when no tracker takes them."""

from __future__ import annotations

from collections.abc import Sequence

from agent_finops.ledger import LeaseCharge, Ledger
from agent_finops.sinks._base import Records
from agent_finops.sinks._ledger_writer import DurableLedgerSink

__all__ = ["ChargeWriter"]


class ChargeWriter:
    """A `ChargeSink` that commits each settle's charges before `settle` returns.

    What a `LeasedBudgetStore` made without `charges_to` writes its charges with: a store
    used on its own (no tracker, no events) settles durably, one transaction per settle,
    retried briefly, then kept in the dead-letter file (`DurableLedgerSink`). The policy
    engine gives its store the tracker instead, so each charge is written with its call's
    cost event, in the tracker's batches.
    """

    def __init__(self, ledger: Ledger) -> None:
        """Write charges into `ledger`."""
        self.writer = DurableLedgerSink(ledger)

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        """Queue the charges as one group."""
        if charges:
            self.writer.emit(Records(charges=charges))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every charge queued so far is written."""
        self.writer.flush(timeout)

    def close(self) -> None:
        """Flush and stop the writer."""
        self.writer.close()
