"""Alert delivery: each alert kept once in the ledger and delivered once to every channel.

`AlertService(ledger, channels).publish(alerts)` raises the new alerts (found by
`agent_finops.anomalies.AnomalyScanner`, or built by hand) and delivers them; channels
implement `AlertChannel` (`name`, `deliver(alert)`). Built in: `LogChannel` (the
`agent_finops` logger) and `ConsoleAlertChannel`; Slack: `agent_finops_slack.SlackAlertChannel`.
See docs/alerts.md.
"""

from agent_finops.alerts._channel import AlertChannel, ConsoleAlertChannel, LogChannel, alert_line
from agent_finops.alerts._json import alert_data
from agent_finops.alerts._plugins import (
    ALERT_CHANNELS_GROUP,
    alert_channel,
    installed_alert_channels,
)
from agent_finops.alerts._service import DEFAULT_GRACE, DEFAULT_RETRY_WITHIN, AlertService

__all__ = [
    "AlertService",
    "AlertChannel",
    "LogChannel",
    "ConsoleAlertChannel",
    "alert_line",
    "alert_data",
    "alert_channel",
    "installed_alert_channels",
    "ALERT_CHANNELS_GROUP",
    "DEFAULT_RETRY_WITHIN",
    "DEFAULT_GRACE",
]
