"""`AlertChannel`: where alerts are delivered; the log and console channels.

A channel has a `name` (recorded with each delivery, so keep it stable: renaming a channel
makes it look undelivered) and `deliver(alert)`, which raises when the alert did not get
through. The `AlertService` catches that, logs it and tries again on its next run.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol, TextIO, runtime_checkable

from agent_finops.ledger import AlertRecord

__all__ = ["AlertChannel", "ConsoleAlertChannel", "LogChannel", "alert_line"]


@runtime_checkable
class AlertChannel(Protocol):
    """Delivers alerts somewhere (a log, a terminal, Slack, a pager)."""

    name: str
    """Stable short name (`log`, `console`, `slack`), kept with each delivery."""

    def deliver(self, alert: AlertRecord) -> None:
        """Deliver one alert; raise if it did not get through (it is retried)."""
        ...


def alert_line(alert: AlertRecord) -> str:
    """One line for people: severity, kind, the message and the top drivers."""
    drivers = "; ".join(_driver(d) for d in alert.drivers)
    tail = f" [drivers: {drivers}]" if drivers else ""
    return f"{alert.severity.upper()} {alert.kind} {alert.alert_id}: {alert.message}{tail}"


def _driver(driver: dict[str, str]) -> str:
    named = [f"{k}={v}" for k, v in driver.items() if k not in ("cost", "expected")]
    cost = f"${driver['cost']}" if "cost" in driver else ""
    was = f" (usually ${driver['expected']})" if "expected" in driver else ""
    return f"{', '.join(named)} {cost}{was}".strip()


class LogChannel:
    """Logs each alert on the `agent_finops` logger: WARNING, or ERROR when critical."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None, *, name: str = "log") -> None:
        """Log to `logger` (default: `logging.getLogger("agent_finops")`)."""
        self.logger = logger or logging.getLogger("agent_finops")
        self.name = name

    def deliver(self, alert: AlertRecord) -> None:
        """Log the alert's line, with the record in `extra["alert"]` for structured logs."""
        level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        self.logger.log(level, "agent-finops alert: %s", alert_line(alert), extra={"alert": alert})


class ConsoleAlertChannel:
    """Prints each alert on one line (default: to stdout), as `agent-finops alerts` does."""

    name = "console"

    def __init__(self, stream: TextIO | None = None, *, name: str = "console") -> None:
        """Write to `stream` (default: `sys.stdout` at the time of writing)."""
        self._stream = stream
        self.name = name

    def deliver(self, alert: AlertRecord) -> None:
        """Print the alert's line."""
        print(alert_line(alert), file=self._stream or sys.stdout, flush=True)
