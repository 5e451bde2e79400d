"""`SlackAlertChannel`: spend alerts (spikes, cost per task, call rate, forecasts) in Slack.

An `agent_finops.alerts.AlertChannel`: the `AlertService` calls `deliver(alert)` once per
alert (it keeps which channels an alert reached in the ledger), and a delivery that fails
raises, so the service retries it on its next run. Posted with `chat.postMessage` to the
channel the settings route the alert's scope to.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import AlertRecord
from agent_finops_slack._alert_message import anomaly_message
from agent_finops_slack._client import bot_client
from agent_finops_slack._config import SlackSettings, load_config

__all__ = ["SlackAlertChannel"]


class SlackAlertChannel:
    """Posts spend alerts to Slack (Block Kit: scope, observed vs expected, window, drivers).

    ```python
    slack = SlackAlertChannel.from_env(settings)
    AlertService(ledger, [LogChannel(), slack]).publish(scanner.scan())
    ```
    """

    def __init__(self, *, client: WebClient, settings: SlackSettings, name: str = "slack") -> None:
        """Post through `client` to the channel `settings` routes each alert's scope to.

        Args:
            client: a `slack_sdk.WebClient` (see `web_client` for the retry policy).
            settings: routes (the alert's scope is matched as tags) and the default channel.
            name: the channel's name in the ledger's delivery records (keep it stable).
        """
        self.client = client
        self.settings = settings
        self.name = name

    @classmethod
    def from_env(cls, settings: SlackSettings, **kwargs: Any) -> SlackAlertChannel:
        """A channel whose bot token comes from `settings.token_env` (`SLACK_BOT_TOKEN`)."""
        client = bot_client(
            settings.token_env, base_url=settings.base_url, max_retry_wait=settings.max_retry_wait
        )
        return cls(client=client, settings=settings, **kwargs)

    def deliver(self, alert: AlertRecord) -> None:
        """Post the alert; raise `SlackApiError` (or a network error) if Slack refused it."""
        text, blocks = anomaly_message(alert)
        self.client.chat_postMessage(
            channel=self.settings.channel_for(alert.scope),
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )


def channel_from_config(config: str | None) -> SlackAlertChannel:
    """The `slack` alert channel of `agent-finops alerts --scan --to slack=slack.yaml`.

    The file is the approver service's (`agent-finops serve --config`): its `slack:`
    section gives the routes, the token's environment variable and the API base URL.
    """
    if config is None:
        raise ConfigurationError(
            "the slack alert channel needs its configuration file",
            field="--to",
            value="slack",
            expected="slack=PATH (the file of agent-finops serve --config)",
        )
    return SlackAlertChannel.from_env(load_config(config).slack)
