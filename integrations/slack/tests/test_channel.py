"""SlackChannel against the Web API emulator, with the real slack_sdk WebClient."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from slack_helpers import CHANNEL, SEARCH_CHANNEL, seed_run

from agent_finops import SQLLedger
from agent_finops.approvals import ApprovalService, ThresholdAlert
from agent_finops.ledger import ApprovalRecord
from agent_finops_slack import SlackChannel, SlackSettings, SlackStore, web_client
from agent_finops_slack.testing import SlackEmulator


@pytest.fixture
def channel(
    ledger: SQLLedger, slack: SlackEmulator, settings: SlackSettings
) -> Iterator[SlackChannel]:
    client = web_client(
        slack.bot_token, base_url=slack.base_url, max_retry_wait=timedelta(seconds=2)
    )
    ch = SlackChannel(ledger, client=client, settings=settings)
    yield ch
    ch.close()


def open_request(
    ledger: SQLLedger, channel: SlackChannel, request: ApprovalRecord
) -> tuple[ApprovalService, ApprovalRecord]:
    service = ApprovalService(ledger, channels=[channel])
    stored = service.open(request)
    assert channel.flush(10)
    return service, stored


def actions_of(blocks: list[dict[str, object]]) -> list[dict[str, object]]:
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    return actions["elements"]  # type: ignore[return-value]


def test_request_message_is_posted_with_buttons_and_remembered(
    ledger: SQLLedger,
    slack: SlackEmulator,
    channel: SlackChannel,
    make_request: Callable[..., ApprovalRecord],
) -> None:
    seed_run(
        ledger,
        "trace-1",
        {
            ("a", "gpt-4o"): "0.30",
            ("b", "gpt-4o-mini"): "0.02",
            ("b", "tool:search"): "0.10",
            ("c", "gpt-4o"): "0.05",
        },
    )
    request = make_request(expires_at=datetime.now(UTC) + timedelta(minutes=30))
    open_request(ledger, channel, request)
    (call,) = slack.calls_to("chat.postMessage", ok=True)
    assert call.params["channel"] == CHANNEL
    text, blocks = call.params["text"], call.params["blocks"]
    assert "run-cap" in text and request.approval_id in text and "$0.0003" in text
    shown = str(blocks)
    for fact in (
        "researcher",
        "qa",
        "ticket-7",
        "trace-1",
        "thread-1",
        "run-cap",
        "v1-abc",
        "$0.0003 of $0.0003 (usd)",
        "$0.0002",
        "<!date^",
    ):
        assert fact in shown, fact
    drivers = next(b for b in blocks if "Top cost drivers" in str(b))["text"]["text"]
    lines = drivers.splitlines()[1:]
    assert len(lines) == 3  # the top three, costliest first
    assert "`a`" in lines[0] and "gpt-4o" in lines[0] and "$0.30" in lines[0]
    assert "search" in lines[1] and "$0.10" in lines[1]
    assert "`c`" in lines[2]
    buttons = actions_of(blocks)
    assert [b["action_id"] for b in buttons] == [
        "finops_approve",
        "finops_approve_raise:5",
        "finops_deny",
    ]
    assert {b["value"] for b in buttons} == {request.approval_id}  # the id and nothing else
    deny = buttons[-1]
    assert deny["style"] == "danger" and deny["confirm"]["confirm"]["text"] == "Deny"
    post = channel.store.get_post(f"request:{request.approval_id}")
    assert post is not None and post.state == "posted" and post.channel == CHANNEL
    assert post.ts == call.answer["ts"]


def test_routed_by_team_and_updated_in_place_after_the_decision(
    ledger: SQLLedger,
    slack: SlackEmulator,
    channel: SlackChannel,
    make_request: Callable[..., ApprovalRecord],
) -> None:
    request = make_request(tags={"team": "search"})
    service, stored = open_request(ledger, channel, request)
    (post,) = slack.calls_to("chat.postMessage", ok=True)
    assert post.params["channel"] == SEARCH_CHANNEL
    service.decide(stored.approval_id, approve=True, by="slack:U0LEAD", extra=Decimal("0.5"))
    assert channel.flush(10)
    (update,) = slack.calls_to("chat.update", ok=True)
    assert update.params["ts"] == post.answer["ts"] and update.params["channel"] == SEARCH_CHANNEL
    message = slack.message(SEARCH_CHANNEL, post.answer["ts"])
    assert "Approved by slack:U0LEAD" in message.text and "extra $0.50" in message.text
    assert "Approved by <@U0LEAD>" in str(message.blocks)
    assert not any(b["type"] == "actions" for b in message.blocks)  # the buttons are gone


def test_rate_limited_post_is_retried_after_retry_after(
    ledger: SQLLedger,
    slack: SlackEmulator,
    channel: SlackChannel,
    make_request: Callable[..., ApprovalRecord],
) -> None:
    slack.rate_limit("chat.postMessage", retry_after=0)
    open_request(ledger, channel, make_request())
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert len(slack.messages) == 1


def test_a_long_retry_after_is_left_to_the_sweep(
    ledger: SQLLedger,
    slack: SlackEmulator,
    channel: SlackChannel,
    make_request: Callable[..., ApprovalRecord],
) -> None:
    slack.rate_limit("chat.postMessage", retry_after=120)  # more than max_retry_wait (2 s)
    _, stored = open_request(ledger, channel, make_request())
    post = channel.store.get_post(f"request:{stored.approval_id}")
    assert post is not None and post.state == "failed" and post.retry_at is not None
    assert timedelta(seconds=110) < post.retry_at - datetime.now(UTC) <= timedelta(seconds=121)
    channel.catch_up(datetime.now(UTC))  # not due yet: nothing sent
    assert len(slack.calls_to("chat.postMessage")) == 1
    channel.catch_up(datetime.now(UTC) + timedelta(seconds=121))
    assert len(slack.calls_to("chat.postMessage", ok=True)) == 1


@pytest.mark.parametrize("error", ["channel_not_found", "token_revoked"])
def test_a_failed_post_is_logged_the_request_stays_pending_and_is_posted_later(
    ledger: SQLLedger,
    slack: SlackEmulator,
    channel: SlackChannel,
    make_request: Callable[..., ApprovalRecord],
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    if error == "token_revoked":
        slack.revoke()
    else:
        slack.fail("chat.postMessage", error)
    with caplog.at_level(logging.ERROR, logger="agent_finops.slack"):
        service, stored = open_request(ledger, channel, make_request())
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"could not post approval {stored.approval_id}" in line and error in line
    assert "stays pending (agent-finops approvals list)" in line
    assert service.get(stored.approval_id).status == "pending"  # nothing lost
    assert [r.approval_id for r in service.requests()] == [stored.approval_id]
    assert not slack.messages
    slack.clear_faults()
    channel.catch_up(datetime.now(UTC))  # not due yet
    assert not slack.messages
    channel.catch_up(datetime.now(UTC) + timedelta(minutes=2))  # after the back-off
    assert len(slack.messages) == 1


def test_notifications_never_raise_into_the_paused_run(
    ledger: SQLLedger, settings: SlackSettings, make_request: Callable[..., ApprovalRecord]
) -> None:
    client = web_client("xoxb-x", base_url="http://127.0.0.1:9/api/")  # nothing listens there
    channel = SlackChannel(ledger, client=client, settings=settings)
    service = ApprovalService(ledger, channels=[channel])
    stored = service.open(make_request())
    service.decide(stored.approval_id, approve=False, by="console:me")
    service.threshold_crossed(
        ThresholdAlert("b", "k", Decimal(50), Decimal(1), Decimal(2), "usd", "t")
    )
    assert channel.flush(30)
    channel.close()
    assert service.get(stored.approval_id).status == "denied"


def test_threshold_alerts_once_per_bucket_and_threshold_across_restarts(
    ledger: SQLLedger, slack: SlackEmulator, settings: SlackSettings
) -> None:
    def alert(pct: int, bucket: str = "daily|team=qa|2026-05-01") -> ThresholdAlert:
        return ThresholdAlert(
            rule_id="daily",
            counter_key=bucket,
            percent=Decimal(pct),
            used=Decimal(pct) / 10,
            limit=Decimal(10),
            unit="usd",
            trace_id="t1",
            scope={"team": "qa"},
            tags={"team": "qa"},
        )

    def new_channel() -> SlackChannel:
        return SlackChannel(
            ledger, client=web_client(slack.bot_token, base_url=slack.base_url), settings=settings
        )

    first = new_channel()
    for pct in (50, 80, 50, 90, 80):
        first.threshold_crossed(alert(pct))
    first.close()
    restarted = new_channel()  # a new process: the store remembers what was sent
    restarted.threshold_crossed(alert(90))
    restarted.threshold_crossed(alert(50, bucket="daily|team=qa|2026-05-02"))  # a new day
    restarted.close()
    texts = [c.params["text"] for c in slack.calls_to("chat.postMessage", ok=True)]
    assert len(texts) == 4
    assert ["50%" in texts[0], "80%" in texts[1], "90%" in texts[2], "50%" in texts[3]] == [
        True
    ] * 4
    assert "$5 of $10" in texts[0] or "$5.0 of $10" in texts[0] or "of $10" in texts[0]


def test_the_sweep_posts_what_nobody_posted_and_refreshes_decided_messages(
    ledger: SQLLedger,
    slack: SlackEmulator,
    settings: SlackSettings,
    make_request: Callable[..., ApprovalRecord],
) -> None:
    quiet = ApprovalService(ledger)  # an app without the Slack channel
    stored = quiet.open(make_request())
    channel = SlackChannel(
        ledger,
        client=web_client(slack.bot_token, base_url=slack.base_url),
        settings=settings,
        background=False,
    )
    channel.catch_up()
    channel.catch_up()  # twice: still one message
    (post,) = slack.calls_to("chat.postMessage", ok=True)
    quiet.decide(stored.approval_id, approve=False, by="console:alice", reason="too dear")
    channel.catch_up()  # decided in the console: the message says so
    message = slack.message(CHANNEL, post.answer["ts"])
    assert "Denied by alice (console)" in str(message.blocks) and "too dear" in str(message.blocks)
    channel.catch_up()
    assert len(slack.calls_to("chat.update")) == 1


def test_user_groups_on_the_list_are_resolved(
    ledger: SQLLedger, slack: SlackEmulator, channel: SlackChannel
) -> None:
    lead = channel.approver("U0LEAD", allowed=["slack-group:S0LEADS", "slack:U0OTHER"])
    assert lead.id == "slack:U0LEAD" and lead.groups == {"slack-group:S0LEADS"}
    other = channel.approver("U0NOBODY", allowed=["slack-group:S0LEADS"])
    assert other.groups == frozenset()
    channel.approver("U0LEAD", allowed=["slack-group:S0LEADS"])
    assert len(slack.calls_to("usergroups.users.list")) == 1  # cached


def test_store_tables_live_beside_the_ledger_and_setup_twice_is_fine(ledger: SQLLedger) -> None:
    store = SlackStore.for_ledger(ledger)
    store.setup()
    SlackStore(ledger.engine).setup()
    now = datetime.now(UTC)
    assert store.claim_post("k", kind="alert", owner="a", now=now)
    assert not store.claim_post("k", kind="alert", owner="b", now=now)
    assert store.first_sight("x", now=now) and not store.first_sight("x", now=now)
    assert store.forget_seen(now + timedelta(seconds=1)) == 1


def test_the_sweep_does_not_flood_the_channel_with_old_requests(
    ledger: SQLLedger,
    slack: SlackEmulator,
    settings: SlackSettings,
    make_request: Callable[..., ApprovalRecord],
) -> None:
    quiet = ApprovalService(ledger)
    quiet.open(make_request(created_at=datetime.now(UTC) - timedelta(days=3)))
    recent = quiet.open(make_request(rule_id="other"))
    channel = SlackChannel(
        ledger,
        client=web_client(slack.bot_token, base_url=slack.base_url),
        settings=settings,
        background=False,
    )
    channel.catch_up()
    (post,) = slack.calls_to("chat.postMessage", ok=True)
    assert recent.approval_id in post.params["text"]  # the old one stays in `approvals list`
