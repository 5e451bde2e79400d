"""Rollups for finance: cost, calls and tokens by any tags and calendar period, exactly.

`rollup(ledger, start=, end=, by=["team", "project"], period="month", tz="Europe/Paris")`
asks the ledger for its totals (computed in the database, `Ledger.aggregate`) per calendar
window of the zone, and returns rows with cost per task, per thousand tokens and per runtime
minute, and budget vs actual where a policy's budget covers the group. `to_json` and
`write_csv` give the same rows as data. `agent-finops rollup` prints them.
"""

from agent_finops.ledger._money import money_text
from agent_finops.rollups._rollup import RATE_PLACES, BudgetLine, Rollup, RollupRow, rollup
from agent_finops.rollups._table import (
    ROLLUP_COLUMNS,
    rollup_records,
    to_json,
    write_csv,
)
from agent_finops.rollups._windows import PERIODS, Period, calendar_windows, zone

__all__ = [
    "rollup",
    "Rollup",
    "RollupRow",
    "BudgetLine",
    "RATE_PLACES",
    "PERIODS",
    "Period",
    "calendar_windows",
    "zone",
    "ROLLUP_COLUMNS",
    "rollup_records",
    "to_json",
    "write_csv",
    "money_text",
]
