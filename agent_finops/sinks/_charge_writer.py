"""`ChargeWriter`: budget-lease charges written in the background when no tracker takes them."""

from __future__ import annotations

from collections.abc import Sequence

from agent_finops.ledger import LeaseCharge, Ledger
from agent_finops.sinks._base import Records
from agent_finops.sinks._ledger_writer import LedgerWriter

__all__ = ["ChargeWriter"]


class ChargeWriter:
    """A `ChargeSink` on a `LedgerWriter` of its own (batched, retried, dead-lettered).

    What a `LeasedBudgetStore` made without `charges_to` writes its charges with. A charge
    written this way is not in the transaction of its call's cost event (there is none in
    the group); give the store the tracker (`charges_to=tracker`) for that.
    """

    def __init__(self, ledger: Ledger) -> None:
        """Write charges into `ledger`."""
        self.writer = LedgerWriter(ledger)

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
