"""Call-rate jumps: calls per minute in a short block against the trailing baseline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from agent_finops.anomalies._finding import Anomaly
from agent_finops.anomalies._money import RATE_QUANTUM, average

__all__ = ["DEFAULT_RATE_FACTOR", "CallRateRule", "find_call_rate_jump"]

DEFAULT_RATE_FACTOR: Final = Decimal(4)
DEFAULT_RATE_BLOCK: Final = timedelta(minutes=5)
DEFAULT_RATE_BASELINE: Final = timedelta(hours=1)
DEFAULT_RATE_MIN: Final = Decimal(10)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRateRule:
    """When calls per minute jump (model and tool calls)."""

    block: timedelta = DEFAULT_RATE_BLOCK
    """The short window judged (blocks aligned to the Unix epoch, each complete one)."""
    baseline: timedelta = DEFAULT_RATE_BASELINE
    """The trailing window right before the block; a whole number of blocks."""
    factor: Decimal = DEFAULT_RATE_FACTOR
    """Alert at or above this many times the baseline rate."""
    min_per_minute: Decimal = DEFAULT_RATE_MIN
    """... and at or above this many calls per minute (a jump from 1 to 5 is no alarm)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work."""
        if self.block <= timedelta(0) or self.block % timedelta(seconds=1):
            raise ValueError("block must be a positive whole number of seconds")
        if self.baseline < self.block or self.baseline % self.block:
            raise ValueError("baseline must be a whole number of blocks")
        if self.factor <= 1 or self.min_per_minute <= 0:
            raise ValueError("factor must be > 1 and min_per_minute > 0")


def find_call_rate_jump(
    *,
    block: tuple[datetime, datetime],
    calls: int,
    baseline_calls: int,
    rule: CallRateRule | None = None,
) -> Anomaly | None:
    """Whether `calls` in `block` jumped against `baseline_calls` in the window before it.

    The window before is `rule.baseline` long. Returns the `call_rate` anomaly (rates in
    calls per minute), or None.
    """
    rule = rule or CallRateRule()
    minutes = Decimal(int((block[1] - block[0]).total_seconds())) / 60
    rate = average(Decimal(calls), minutes, RATE_QUANTUM)
    usual_minutes = Decimal(int(rule.baseline.total_seconds())) / 60
    usual = average(Decimal(baseline_calls), usual_minutes, RATE_QUANTUM)
    if rate < rule.min_per_minute or rate < usual * rule.factor:
        return None
    return Anomaly(
        kind="call_rate",
        window_start=block[0],
        window_end=block[1],
        observed=rate,
        expected=usual,
        score=float(rate / usual) if usual else float("inf"),
        basis="trailing rate",
    )
