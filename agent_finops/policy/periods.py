"""Budget periods: which bucket a moment belongs to, and durations as the policy file writes them.

Public for tooling that must agree with enforcement to the bucket (FinOps rollups,
reconciliation): `window_for(period, now, tz)` is the period's window, `counter_key(...)` the
key of the budget counter a call is charged to (hashed to fit when longer than
`MAX_COUNTER_KEY_LENGTH`). No window or duration is longer than `MAX_WINDOW`.
"""

from agent_finops.policy._periods import (
    MAX_COUNTER_KEY_LENGTH,
    MAX_WINDOW,
    PeriodKind,
    counter_key,
    format_duration,
    parse_duration,
    window_for,
)

__all__ = [
    "MAX_COUNTER_KEY_LENGTH",
    "MAX_WINDOW",
    "PeriodKind",
    "counter_key",
    "format_duration",
    "parse_duration",
    "window_for",
]
