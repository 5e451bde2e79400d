"""agent-finops in Slack: approval buttons, threshold and spend alerts, `agent-finops serve`.

Approval requests are posted with Approve/Deny buttons; the approver service decides the
clicks and resumes the paused runs.

Install with `pip install agent-finops-slack` (from this repo:
`pip install -e . -e integrations/slack`). See docs/slack.md.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from agent_finops.exceptions import MissingDependencyError


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_MISSING = [name for name in ("slack_sdk", "slack_bolt") if not _installed(name)]
if _MISSING:  # checked without importing them: `agent-finops runs` must stay fast
    raise MissingDependencyError(
        f"agent_finops_slack needs slack-sdk and slack-bolt ({', '.join(_MISSING)} missing): "
        "pip install agent-finops-slack  (or: pip install slack-sdk slack-bolt waitress)"
    )

if TYPE_CHECKING:
    from agent_finops_slack._alert_channel import SlackAlertChannel
    from agent_finops_slack._alert_message import anomaly_message
    from agent_finops_slack._channel import SlackChannel
    from agent_finops_slack._client import RetryAfterHandler, web_client
    from agent_finops_slack._config import (
        ChannelRoute,
        ServeSettings,
        ServiceConfig,
        SlackSettings,
        config_from_mapping,
        load_config,
    )
    from agent_finops_slack._message import (
        APPROVE_ACTION,
        DENY_ACTION,
        RAISE_ACTION,
        CostDriver,
        alert_message,
        amount,
        cost_drivers,
        decided_message,
        request_message,
        who,
    )
    from agent_finops_slack._serve import Service, build_service, run_service
    from agent_finops_slack._service import Resumer, SlackApprover
    from agent_finops_slack._store import SlackPost, SlackStore

__all__ = [
    # the channel
    "SlackChannel",
    "SlackAlertChannel",
    "SlackStore",
    "SlackPost",
    "web_client",
    "RetryAfterHandler",
    # the approver service
    "SlackApprover",
    "Resumer",
    "Service",
    "build_service",
    "run_service",
    # config
    "ServiceConfig",
    "SlackSettings",
    "ServeSettings",
    "ChannelRoute",
    "load_config",
    "config_from_mapping",
    # messages
    "request_message",
    "decided_message",
    "alert_message",
    "anomaly_message",
    "cost_drivers",
    "CostDriver",
    "APPROVE_ACTION",
    "DENY_ACTION",
    "RAISE_ACTION",
    "amount",
    "who",
]

_HOME = {
    "SlackChannel": "_channel",
    "SlackAlertChannel": "_alert_channel",
    "anomaly_message": "_alert_message",
    "SlackStore": "_store",
    "SlackPost": "_store",
    "web_client": "_client",
    "RetryAfterHandler": "_client",
    "SlackApprover": "_service",
    "Resumer": "_service",
    "Service": "_serve",
    "build_service": "_serve",
    "run_service": "_serve",
    "ServiceConfig": "_config",
    "SlackSettings": "_config",
    "ServeSettings": "_config",
    "ChannelRoute": "_config",
    "load_config": "_config",
    "config_from_mapping": "_config",
    "request_message": "_message",
    "decided_message": "_message",
    "alert_message": "_message",
    "cost_drivers": "_message",
    "CostDriver": "_message",
    "APPROVE_ACTION": "_message",
    "DENY_ACTION": "_message",
    "RAISE_ACTION": "_message",
    "amount": "_message",
    "who": "_message",
}


def __getattr__(name: str) -> Any:
    # Public names are imported on first use (slack_sdk alone takes ~0.2 s to import).
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
