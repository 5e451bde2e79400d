"""The monthly finance report: summary, cost centers vs budget, teams, anomalies, forecast.

`build_finance_report(ledger, month="2026-11", tz="Europe/Paris", policy=policy)` computes it
from the ledger's aggregates; `render_finance_text`, `render_finance_html` and `to_json()`
show it. `agent-finops finance-report --month 2026-11 [--html out.html | --json]`.
"""

from agent_finops.finance._render import render_finance_html, render_finance_text
from agent_finops.finance._report import (
    FORECAST_DAYS,
    CostCenterLine,
    Driver,
    FinanceReport,
    Forecast,
    TeamLine,
    build_finance_report,
    month_range,
)

__all__ = [
    "build_finance_report",
    "FinanceReport",
    "Driver",
    "CostCenterLine",
    "TeamLine",
    "Forecast",
    "FORECAST_DAYS",
    "month_range",
    "render_finance_text",
    "render_finance_html",
]
