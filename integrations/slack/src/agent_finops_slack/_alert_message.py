"""The Slack message of a spend alert: a header, the message, the figures and the drivers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from agent_finops.ledger import AlertRecord
from agent_finops.reports import money

__all__ = ["TITLES", "anomaly_message"]

TITLES: Final = {
    "cost_spike": "Cost spike",
    "cost_per_task": "Cost per task jump",
    "call_rate": "Call rate jump",
    "forecast": "Budget forecast over its limit",
}
_MAX_TEXT: Final = 2900
"""A section's text is at most 3,000 characters in Block Kit."""


def anomaly_message(alert: AlertRecord) -> tuple[str, list[dict[str, Any]]]:
    """The notification text and the blocks of an alert."""
    title = TITLES.get(alert.kind, alert.kind)
    icon = ":rotating_light:" if alert.severity == "critical" else ":warning:"
    scope = ", ".join(f"{k}={v}" for k, v in alert.scope.items()) or "everything"
    unit = "calls/min" if alert.kind == "call_rate" else "usd"
    observed_label, expected_label = _labels(alert)
    fields = [
        f"*Scope*\n{scope}",
        f"*Window*\n{_window(alert.window_start, alert.window_end)}",
        f"*{observed_label}*\n{_figure(alert.observed, unit)}",
        f"*{expected_label}*\n{_figure(alert.expected, unit)}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title} ({scope})"[:150]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{icon} {alert.message}"[:_MAX_TEXT]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if alert.drivers:
        lines = "\n".join(f"• {_driver(d)}" for d in alert.drivers)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Top cost drivers*\n{lines}"}}
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert `{alert.alert_id}`"}]}
    )
    text = f"{icon} {title} ({scope}): {alert.message}"[:_MAX_TEXT]
    return text, blocks


def _labels(alert: AlertRecord) -> tuple[str, str]:
    if alert.kind == "forecast":
        return "Projected", "Limit"
    if alert.kind == "cost_per_task":
        return "Cost per task", "7-day average"
    if alert.kind == "call_rate":
        return "Calls per minute", "Hour before"
    return "Observed", "Expected"


def _figure(value: Decimal | None, unit: str) -> str:
    if unit == "usd":
        return money(value)
    return "unknown" if value is None else format(value.normalize(), "f")


def _window(start: datetime, end: datetime) -> str:
    same_day = start.date() == end.date()
    return (
        f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC"
        if same_day
        else (f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    )


def _driver(driver: dict[str, str]) -> str:
    named = ", ".join(f"{k}=`{v}`" for k, v in driver.items() if k not in ("cost", "expected"))
    cost = money(Decimal(driver["cost"])) if "cost" in driver else ""
    usual = ""
    if "expected" in driver:
        before = Decimal(driver["expected"])
        usual = f" (usually {money(before)})" if before else " (new)"
    return f"{named}: {cost}{usual}"
