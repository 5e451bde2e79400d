"""The Block Kit messages: request, outcome, alert; amounts and people as Slack shows them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from agent_finops.approvals import ThresholdAlert
from agent_finops.ledger import ApprovalRecord
from agent_finops_slack import alert_message, amount, decided_message, request_message, who


def test_amounts_and_people() -> None:
    assert amount(Decimal("0.00042"), "usd") == "$0.00042"
    assert amount(Decimal("5"), "usd") == "$5.00" or amount(Decimal("5"), "usd") == "$5"
    assert amount(Decimal("12000"), "tokens") == "12,000 tokens"
    assert amount(None, "usd") == "unknown"
    assert who("slack:U1") == "<@U1>" and who("console:alice") == "alice (console)"
    assert (
        who("resume:ops") == "ops (the app)"
        and who("expiry") == "expiry"
        and who(None) == "someone"
    )


def test_a_loop_request_has_no_raise_buttons_and_says_what_looped(
    make_request: Callable[..., ApprovalRecord],
) -> None:
    request = make_request(unit="loop", spent=Decimal(5), limit=Decimal(4), estimate=Decimal(0))
    text, blocks = request_message(request, raise_options=[Decimal(5)])
    assert "loop rule run-cap: 5 seen, limit 4" in text
    (actions,) = [b.to_dict() for b in blocks if b.type == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["finops_approve", "finops_deny"]
    assert actions["elements"][0]["text"]["text"] == "Approve"  # a loop approval waives the rule


def test_outcomes_in_place_of_the_buttons(make_request: Callable[..., ApprovalRecord]) -> None:
    at = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    approved = make_request(
        status="approved", decided_by="slack:U1", decided_at=at, extra=Decimal("2.5")
    )
    text, blocks = decided_message(approved)
    assert text.startswith("Approved by slack:U1 at 2026-05-01 12:30 UTC, extra $2.50")
    last = blocks[-1].to_dict()
    assert "Approved by <@U1> at <!date^" in last["text"]["text"]
    assert all(b.type != "actions" for b in blocks)
    denied = make_request(
        status="denied", decided_by="slack:U2", decided_at=at, reason="too <dear>"
    )
    assert "Denied by <@U2>" in str(decided_message(denied)[1][-1].to_dict())
    assert "too &lt;dear&gt;" in str(decided_message(denied)[1][-1].to_dict())  # escaped
    expired = make_request(status="expired", decided_by="expiry", decided_at=at)
    assert (
        "Expired undecided at 2026-05-01 12:30 UTC: the run was stopped"
        in decided_message(expired)[0]
    )
    go_on = make_request(status="approved", decided_by="expiry", decided_at=at, extra=Decimal(1))
    assert "approved by the expiry rule, extra $1" in decided_message(go_on)[0]


def test_alert_text() -> None:
    alert = ThresholdAlert(
        "daily", "k", Decimal(80), Decimal("8.0"), Decimal(10), "usd", "t1", scope={"team": "qa"}
    )
    text = alert_message(alert)
    assert "Budget daily (team=qa) is at 80%" in text and "of $10" in text and "run t1" in text
