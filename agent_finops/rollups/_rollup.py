"""`rollup()`: cost, calls and tokens by tags and calendar period, with budget vs actual.

The ledger computes the totals (`Ledger.aggregate`, in SQL); this module picks the windows
(calendar periods of a time zone), names the groups, derives the per-unit figures (cost per
task, per thousand tokens, per runtime minute) and lays a policy's budgets over the groups
they cover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from agent_finops.ledger import BUCKETS, EventTotals, Ledger
from agent_finops.ledger._money import EXACT
from agent_finops.policy import Budget, Policy
from agent_finops.rollups._windows import _POLICY_PERIOD, calendar_windows, zone

__all__ = ["RATE_PLACES", "BudgetLine", "Rollup", "RollupRow", "rollup"]

RATE_PLACES: Final = 10
"""Decimal places of derived rates (cost per task, per 1k tokens, per minute), half-even."""
_RATE_QUANTUM: Final = Decimal(1).scaleb(-RATE_PLACES)
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)


def rate(amount: Decimal, per: Decimal | int | float) -> Decimal | None:
    """`amount / per` to `RATE_PLACES` places; None when `per` is zero."""
    divisor = Decimal(str(per)) if isinstance(per, float) else Decimal(per)
    if divisor == 0:
        return None
    return EXACT.divide(amount, divisor).quantize(_RATE_QUANTUM, ROUND_HALF_EVEN, EXACT)


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetLine:
    """The budget of the policy that covers a rollup group, and how much of it was used."""

    rule_id: str
    limit: Decimal
    actual: Decimal
    used_pct: Decimal
    """`actual / limit * 100`, to two places."""
    remaining: Decimal
    """`limit - actual` (negative when over)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RollupRow:
    """One group in one period."""

    start: datetime
    """Period start in the rollup's time zone (clipped to the range)."""
    end: datetime
    group: dict[str, str | None]
    """The `by` tags' values (None: the events lack the tag)."""
    totals: EventTotals
    budget: BudgetLine | None = None

    @property
    def cost_per_task(self) -> Decimal | None:
        """Known cost per distinct task (None without tasks)."""
        return rate(self.totals.cost, self.totals.tasks)

    @property
    def cost_per_1k_tokens(self) -> Decimal | None:
        """Known cost per thousand tokens (None without tokens)."""
        return rate(EXACT.multiply(self.totals.cost, Decimal(1000)), self.totals.tokens)

    @property
    def cost_per_runtime_minute(self) -> Decimal | None:
        """Known cost per minute of the runs' wall-clock time (None without runtime)."""
        minutes = Decimal(str(round(self.totals.runtime_seconds, 3))) / 60
        return rate(self.totals.cost, minutes) if minutes else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollup:
    """The rows of a rollup and the range's total."""

    by: tuple[str, ...]
    period: str
    tz: str
    start: datetime
    end: datetime
    rows: list[RollupRow]
    total: EventTotals
    """The sum of the rows (distinct runs and tasks summed over them, see `rollup`)."""


def rollup(
    ledger: Ledger,
    *,
    start: datetime,
    end: datetime,
    by: Sequence[str] = (),
    period: str = "month",
    tz: str = "UTC",
    where: Mapping[str, Sequence[str]] | None = None,
    policy: Policy | None = None,
    runtime: bool = False,
) -> Rollup:
    """Totals of `[start, end)` by `by` tags and calendar `period`, computed by the ledger.

    `period` is `hour`, `day`, `week` (ISO), `month` or `all`, in time zone `tz`.
    With a `policy`, each row whose cost *is* a USD budget's spend carries that budget vs
    actual: the same period, the policy's time zone, the budget's scope tags exactly the
    `by` tags (values matching; `where` only on scope tags). A budget with an exact value
    beats one with `"*"`, then the first in the file wins.

    `runtime` also measures the runs' wall-clock time (cost per runtime minute): a second
    pass over the events.

    One aggregate statement per period window. `total` is the sum of the rows: exact for
    money, calls and tokens; a run or task with events in several groups or periods counts
    in each (for exact distinct counts over the range, roll up with `period="all"`, `by=()`).
    """
    zone_info = zone(tz)
    windows = calendar_windows(period, start, end, zone_info)
    dims = tuple(by)
    found = ledger.aggregate(by=dims, windows=windows, where=where, runtime=runtime)
    budgets = _budgets(policy, period, dims, where, tz)
    rows = []
    for a in found:
        group = dict(zip(dims, a.group, strict=True))
        rows.append(
            RollupRow(
                start=a.start.astimezone(zone_info),
                end=a.end.astimezone(zone_info),
                group=group,
                totals=a.totals,
                budget=_budget_line(budgets, group, a.totals.cost),
            )
        )
    total = EventTotals(cost_by_bucket=dict.fromkeys(BUCKETS, _ZERO))
    for a in found:
        total.add(a.totals)
    return Rollup(
        by=dims,
        period=period,
        tz=tz,
        start=start.astimezone(zone_info),
        end=end.astimezone(zone_info),
        rows=rows,
        total=total,
    )


def _budgets(
    policy: Policy | None,
    period: str,
    dims: tuple[str, ...],
    where: Mapping[str, Sequence[str]] | None,
    tz: str,
) -> list[Budget]:
    """The budgets whose spend a row *is*: same period and zone, scope tags = the `by` tags.

    A row of `by=team,project` is a slice of a team budget's spend, not its spend, so it
    gets no team budget; nor does a row filtered by a tag outside the budget's scope.
    """
    if policy is None or period not in _POLICY_PERIOD or policy.timezone != tz:
        return []
    wanted = _POLICY_PERIOD[period]
    filtered = set(where or {})
    return [
        b
        for b in policy.budgets
        if b.unit == "usd"
        and b.period == wanted
        and set(b.scope.root) == set(dims)
        and filtered <= set(b.scope.root)
    ]


def _specificity(scope: Mapping[str, str]) -> tuple[int, int]:
    """More tags first, then more exact values (`team: search` beats `team: "*"`)."""
    return len(scope), sum(v != "*" for v in scope.values())


def _budget_line(
    budgets: list[Budget], group: Mapping[str, str | None], actual: Decimal
) -> BudgetLine | None:
    best: Budget | None = None
    for budget in budgets:
        scope = budget.scope.root
        if not all(k in group and group[k] is not None for k in scope):
            continue
        if not all(v == "*" or group[k] == v for k, v in scope.items()):
            continue
        if best is None or _specificity(scope) > _specificity(best.scope.root):
            best = budget
    if best is None:
        return None
    limit = best.limit
    used = EXACT.divide(EXACT.multiply(actual, _HUNDRED), limit)
    return BudgetLine(
        rule_id=best.id,
        limit=limit,
        actual=actual,
        used_pct=used.quantize(Decimal("0.01"), ROUND_HALF_EVEN, EXACT),
        remaining=EXACT.subtract(limit, actual),
    )
