"""Alert channels other packages provide, found through entry points (e.g. Slack).

A package declares, in its `pyproject.toml`:

```toml
[project.entry-points."agent_finops.alert_channels"]
slack = "agent_finops_slack._alert_channel:channel_from_config"
```

The factory takes the channel's configuration file (a path, or None) and returns an
`AlertChannel`. `agent-finops alerts --scan --to slack=slack.yaml` uses it; the core imports
nothing of the package until then.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Final

from agent_finops.alerts._channel import AlertChannel
from agent_finops.exceptions import ConfigurationError

__all__ = ["ALERT_CHANNELS_GROUP", "alert_channel", "installed_alert_channels"]

ALERT_CHANNELS_GROUP: Final = "agent_finops.alert_channels"


def installed_alert_channels() -> list[str]:
    """Names of the alert channels installed packages provide."""
    return sorted({p.name for p in entry_points(group=ALERT_CHANNELS_GROUP)})


def alert_channel(name: str, config: str | None = None) -> AlertChannel:
    """The installed channel `name`, built from its configuration file.

    Raises `ConfigurationError` naming the channel when no package provides it, or when it
    cannot load (its package broken or a dependency missing).
    """
    found = [p for p in entry_points(group=ALERT_CHANNELS_GROUP) if p.name == name]
    if not found:
        raise ConfigurationError(
            "no such alert channel",
            field="--to",
            value=name,
            expected="one of: "
            + (", ".join(installed_alert_channels()) or "none installed")
            + " (e.g. pip install agent-finops-slack for slack)",
        )
    try:
        factory = found[0].load()
    except Exception as exc:  # a broken plugin is an error message, not a traceback
        raise ConfigurationError(
            f"the {name!r} alert channel cannot load: {exc}", field="--to", value=name
        ) from exc
    channel: AlertChannel = factory(config)
    return channel
