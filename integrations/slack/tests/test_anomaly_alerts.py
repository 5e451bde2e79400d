"""Spend alerts (anomalies, forecasts) reach Slack once, through the AlertService."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from slack_helpers import CHANNEL, SEARCH_CHANNEL

from agent_finops import SQLLedger
from agent_finops.alerts import AlertService, LogChannel
from agent_finops.anomalies import alert_id
from agent_finops.ledger import AlertRecord
from agent_finops_slack import SlackAlertChannel, SlackSettings, anomaly_message, web_client
from agent_finops_slack.testing import SlackEmulator

WINDOW = (datetime(2026, 11, 10, 9, tzinfo=UTC), datetime(2026, 11, 10, 10, tzinfo=UTC))


def spike(team: str = "search") -> AlertRecord:
    scope = {"team": team}
    return AlertRecord(
        alert_id=alert_id("cost_spike", scope, *WINDOW),
        kind="cost_spike",
        scope=scope,
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        created_at=WINDOW[1] + timedelta(minutes=5),
        severity="critical",
        message="Cost spike for team=search: $42.10 in the hour from 2026-11-10 09:00 UTC",
        observed=Decimal("42.1"),
        expected=Decimal("3.5"),
        drivers=[
            {"agent": "planner", "cost": "38.2", "expected": "1.1"},
            {"model": "gpt-4o", "cost": "30", "expected": "0"},
        ],
    )


def channel_for(slack: SlackEmulator, settings: SlackSettings) -> SlackAlertChannel:
    client = web_client(slack.bot_token, base_url=slack.base_url, max_retry_wait=timedelta(0))
    return SlackAlertChannel(client=client, settings=settings)


def test_an_alert_is_posted_with_scope_figures_window_and_drivers(
    slack: SlackEmulator, settings: SlackSettings
) -> None:
    channel_for(slack, settings).deliver(spike())
    (call,) = slack.calls_to("chat.postMessage", ok=True)
    assert call.params["channel"] == SEARCH_CHANNEL  # routed by the scope
    (message,) = slack.messages.values()
    flat = str(message.blocks)
    assert "Cost spike (team=search)" in flat
    assert "$42.10" in flat and "$3.50" in flat
    assert "2026-11-10 09:00-10:00 UTC" in flat
    assert "agent=`planner`: $38.20 (usually $1.10)" in flat
    assert "model=`gpt-4o`: $30.00 (new)" in flat
    assert message.text.startswith(":rotating_light: Cost spike (team=search)")
    text, blocks = anomaly_message(spike("ads"))
    assert "team=ads" in text and blocks[0]["type"] == "header"


def test_a_forecast_names_projection_and_limit(
    slack: SlackEmulator, settings: SlackSettings
) -> None:
    forecast = AlertRecord(
        alert_id="forecast-1",
        kind="forecast",
        scope={"budget": "monthly", "team": "qa"},
        window_start=datetime(2026, 11, 1, tzinfo=UTC),
        window_end=datetime(2026, 12, 1, tzinfo=UTC),
        created_at=datetime(2026, 11, 14, tzinfo=UTC),
        message="Budget monthly (team=qa) is projected to reach $1,046.00",
        observed=Decimal("1046"),
        expected=Decimal("1000"),
    )
    channel_for(slack, settings).deliver(forecast)
    (message,) = slack.messages.values()
    assert message.channel == CHANNEL
    flat = str(message.blocks)
    assert "*Projected*\\n$1,046.00" in flat
    assert "*Limit*" in flat and "2026-11-01 00:00 to 2026-12-01 00:00 UTC" in flat


@pytest.mark.parametrize("error", ["channel_not_found", "ratelimited"])
def test_a_failed_post_is_retried_on_the_next_run_and_posted_once(
    error: str, ledger: SQLLedger, slack: SlackEmulator, settings: SlackSettings
) -> None:
    if error == "ratelimited":
        slack.rate_limit("chat.postMessage", retry_after=30)  # longer than we wait inline
    else:
        slack.fail("chat.postMessage", error)
    clock = [WINDOW[1] + timedelta(minutes=5)]
    service = AlertService(
        ledger, [LogChannel(), channel_for(slack, settings)], clock=lambda: clock[0]
    )
    raised = service.publish([spike()])
    assert [a.delivered for a in raised] == [["log"]]
    assert slack.calls_to("chat.postMessage", ok=True) == []
    clock[0] += timedelta(minutes=10)
    assert service.publish([spike()]) == []  # known: not raised again, only retried
    assert len(slack.calls_to("chat.postMessage", ok=True)) == 1
    assert sorted(ledger.list_alerts()[0].delivered) == ["log", "slack"]
    clock[0] += timedelta(minutes=10)
    service.publish([spike()])
    assert len(slack.calls_to("chat.postMessage", ok=True)) == 1


def test_the_cli_scan_posts_to_slack_through_the_installed_channel_once(
    slack: SlackEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`agent-finops alerts --scan --to slack=slack.yaml`: found through its entry point."""
    from agent_finops.alerts import installed_alert_channels
    from agent_finops.cli import main as cli
    from agent_finops.ledger import CostEvent

    assert "slack" in installed_alert_channels()
    url = f"sqlite:///{tmp_path}/l.sqlite"
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events, hour = [], now - timedelta(days=21)
    while hour < now:
        events.append(
            CostEvent(
                event_id=f"e{len(events)}",
                trace_id="t",
                span_id="s",
                kind="model",
                name="gpt-4o-mini",
                provider="openai",
                created_at=hour + timedelta(minutes=1),
                node_path=None,
                tags={"team": "search", "agent": "planner"},
                cost=Decimal("40" if hour == now - timedelta(hours=1) else "1"),
                price_source="test",
                price_version="1",
            )
        )
        hour += timedelta(hours=1)
    with SQLLedger.from_url(url) as led:
        led.write(events=events)
    config = tmp_path / "slack.yaml"
    config.write_text(
        f"slack:\n  default_channel: {CHANNEL}\n  base_url: {slack.base_url}\n"
        f"  routes:\n    - {{scope: {{team: search}}, channel: {SEARCH_CHANNEL}}}\n"
    )
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
    argv = ["alerts", "--db", url, "--scan", "--since", "2h", "--to", f"slack={config}"]
    assert cli(argv) == 0
    assert "1 new alert" in capsys.readouterr().out
    (call,) = slack.calls_to("chat.postMessage", ok=True)
    assert call.params["channel"] == SEARCH_CHANNEL
    assert cli(argv) == 0  # the same hours again: nothing new, nothing posted twice
    assert len(slack.calls_to("chat.postMessage", ok=True)) == 1
    assert cli(["alerts", "--db", url]) == 0
    assert "delivered: console, log, slack" in capsys.readouterr().out
    assert cli(["alerts", "--db", url, "--scan", "--to", "pager"]) == 1
    assert "no such alert channel" in capsys.readouterr().err
