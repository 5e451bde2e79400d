"""Reports built from the ledger: the per-run cost report (tree and rollups) and the dashboard."""

from agent_finops.reports._dashboard import (
    DASHBOARD_SCHEMA_VERSION,
    Anomaly,
    BudgetBurn,
    BudgetLine,
    Dashboard,
    DaySpend,
    GroupSpend,
    SpendFigures,
    build_dashboard,
)
from agent_finops.reports._dashboard_html import render_dashboard_html, write_dashboard_html
from agent_finops.reports._html import money_text, render_html, write_html
from agent_finops.reports._render import money, render_policy, render_text
from agent_finops.reports._run_report import (
    REPORT_SCHEMA_VERSION,
    Rollup,
    RunReport,
    Segment,
    SpanNode,
    Totals,
    build_report,
    build_thread_report,
    load_run_report,
)

__all__ = [
    "DASHBOARD_SCHEMA_VERSION",
    "Anomaly",
    "BudgetBurn",
    "BudgetLine",
    "Dashboard",
    "DaySpend",
    "GroupSpend",
    "SpendFigures",
    "build_dashboard",
    "render_dashboard_html",
    "write_dashboard_html",
    "REPORT_SCHEMA_VERSION",
    "Rollup",
    "RunReport",
    "Segment",
    "SpanNode",
    "Totals",
    "build_report",
    "build_thread_report",
    "load_run_report",
    "money",
    "money_text",
    "render_html",
    "render_policy",
    "render_text",
    "write_html",
]
