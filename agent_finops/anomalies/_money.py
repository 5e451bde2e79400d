"""Amounts the detectors report: averages and rates rounded to what a ledger stores."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Final

__all__ = ["RATE_QUANTUM", "USD_QUANTUM", "average"]

USD_QUANTUM: Final = Decimal("1e-9")
"""Averages and projections are kept to the nano-dollar (a ledger holds 18 places)."""
RATE_QUANTUM: Final = Decimal("0.01")
"""Calls per minute are kept to the hundredth."""
_WIDE: Final = Context(prec=60, rounding=ROUND_HALF_EVEN)


def average(total: Decimal, count: int | Decimal, quantum: Decimal = USD_QUANTUM) -> Decimal:
    """`total / count`, rounded half-even to `quantum`; ValueError for a zero count."""
    if not count:
        raise ValueError("average of nothing")
    return _WIDE.divide(total, Decimal(count)).quantize(quantum, context=_WIDE)
