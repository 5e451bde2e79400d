"""A rollup as flat records: JSON (`to_json`) and CSV (`write_csv`), the same columns.

Money is printed as exact decimal text (never a float), times as ISO 8601 with the
rollup's UTC offset; the column order is fixed, so the same ledger gives the same bytes.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from typing import IO, Any, Final

from agent_finops.ledger import BUCKETS
from agent_finops.ledger._money import money_text
from agent_finops.rollups._rollup import Rollup, RollupRow

__all__ = ["ROLLUP_COLUMNS", "rollup_records", "to_json", "write_csv"]

ROLLUP_COLUMNS: Final = (
    "period_start",
    "period_end",
    "cost",
    *(f"cost_{b}" for b in BUCKETS),
    "events",
    "model_calls",
    "tool_calls",
    "compute_events",
    "unpriced_calls",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "tokens",
    "runs",
    "tasks",
    "runtime_seconds",
    "cost_per_task",
    "cost_per_1k_tokens",
    "cost_per_runtime_minute",
    "budget_rule",
    "budget_limit",
    "budget_used_pct",
    "budget_remaining",
)
"""Columns after the `by` tags, in order."""


def _record(rollup: Rollup, row: RollupRow) -> dict[str, Any]:
    t, budget = row.totals, row.budget
    record: dict[str, Any] = {dim: row.group[dim] for dim in rollup.by}
    record.update(
        period_start=row.start.isoformat(),
        period_end=row.end.isoformat(),
        cost=money_text(t.cost),
        **{f"cost_{b}": money_text(t.cost_by_bucket.get(b, Decimal(0))) for b in BUCKETS},
        events=t.events,
        model_calls=t.model_calls,
        tool_calls=t.tool_calls,
        compute_events=t.compute_events,
        unpriced_calls=t.unpriced,
        uncached_input_tokens=t.uncached_input_tokens,
        cache_read_tokens=t.cache_read_tokens,
        cache_write_tokens=t.cache_write_tokens,
        output_tokens=t.output_tokens,
        reasoning_tokens=t.reasoning_tokens,
        tokens=t.tokens,
        runs=t.runs,
        tasks=t.tasks,
        runtime_seconds=round(t.runtime_seconds, 3),
        cost_per_task=money_text(row.cost_per_task),
        cost_per_1k_tokens=money_text(row.cost_per_1k_tokens),
        cost_per_runtime_minute=money_text(row.cost_per_runtime_minute),
        budget_rule=None if budget is None else budget.rule_id,
        budget_limit=None if budget is None else money_text(budget.limit),
        budget_used_pct=None if budget is None else money_text(budget.used_pct),
        budget_remaining=None if budget is None else money_text(budget.remaining),
    )
    return record


def rollup_records(rollup: Rollup) -> list[dict[str, Any]]:
    """One flat record per row: the `by` tags, then `ROLLUP_COLUMNS`."""
    return [_record(rollup, row) for row in rollup.rows]


def to_json(rollup: Rollup) -> dict[str, Any]:
    """The rollup as JSON-able data: the query, the rows, and the range's total."""
    whole = RollupRow(start=rollup.start, end=rollup.end, group={}, totals=rollup.total)
    total = _record(Rollup(**{**_fields(rollup), "by": ()}), whole)
    return {
        "schema": 1,
        "by": list(rollup.by),
        "period": rollup.period,
        "tz": rollup.tz,
        "from": rollup.start.isoformat(),
        "to": rollup.end.isoformat(),
        "rows": rollup_records(rollup),
        "total": total,
    }


def _fields(rollup: Rollup) -> dict[str, Any]:
    return {name: getattr(rollup, name) for name in rollup.__dataclass_fields__}


def write_csv(rollup: Rollup, out: IO[str]) -> None:
    """The rows as CSV with a header (empty cells for None), LF line ends."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*rollup.by, *ROLLUP_COLUMNS])
    for record in rollup_records(rollup):
        writer.writerow(["" if v is None else v for v in record.values()])
