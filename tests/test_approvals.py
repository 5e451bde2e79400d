"""The approval service: decide once, by someone allowed, expire, notify channels, resume."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agent_finops import (
    AlreadyDecided,
    ApprovalNotFound,
    ApproverNotAllowed,
    ConfigurationError,
    SQLLedger,
    UnknownResumeTarget,
)
from agent_finops.approvals import (
    ApprovalAnswer,
    ApprovalChannel,
    ApprovalService,
    Approver,
    Approvers,
    ResumeRequest,
    ResumeTargets,
    ThresholdAlert,
    parse_answer,
)
from agent_finops.ledger import ApprovalRecord
from agent_finops.policy import Policy

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Recorder(ApprovalChannel):
    name = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def request_opened(self, request: ApprovalRecord) -> None:
        self.events.append(("opened", request.approval_id))

    def request_decided(self, request: ApprovalRecord) -> None:
        self.events.append((f"decided:{request.status}", request.approval_id))

    def request_expired(self, request: ApprovalRecord) -> None:
        self.events.append((f"expired:{request.status}", request.approval_id))

    def threshold_crossed(self, alert: ThresholdAlert) -> None:
        self.events.append(("threshold", f"{alert.rule_id}@{alert.percent}"))


class Broken(ApprovalChannel):
    name = "broken"

    def request_opened(self, request: ApprovalRecord) -> None:
        raise RuntimeError("slack is down")


@pytest.fixture
def ledger(tmp_path: Any) -> Iterator[SQLLedger]:
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/a.sqlite") as led:
        yield led


def request(approval_id: str = "ap-1", **kw: Any) -> ApprovalRecord:
    fields: dict[str, Any] = {
        "approval_id": approval_id,
        "trace_id": "trace-1",
        "thread_id": "thread-1",
        "rule_id": "cap",
        "scope": {"team": "support"},
        "unit": "usd",
        "spent": Decimal("0.9"),
        "limit": Decimal("1"),
        "estimate": Decimal("0.3"),
        "policy_version": "v1",
        "created_at": T0,
        "tags": {"team": "support", "task": "t1"},
        **kw,
    }
    return ApprovalRecord(**fields)


def test_first_decision_wins_and_is_audited(ledger: SQLLedger) -> None:
    channel = Recorder()
    service = ApprovalService(ledger, channels=[channel], clock=Clock())
    service.open(request())
    decided = service.decide("ap-", approve=True, by=Approver("slack:U1"), reason="ok")
    assert (decided.status, decided.decided_by, decided.extra) == (
        "approved",
        "slack:U1",
        Decimal("0.3"),  # default extra: max(estimate, 20% of limit)
    )
    with pytest.raises(AlreadyDecided, match="already approved by slack:U1") as info:
        service.decide("ap-1", approve=False, by="console:bob")
    assert info.value.decided_by == "slack:U1"
    with pytest.raises(ApprovalNotFound):
        service.decide("nope", approve=True, by="console:bob")
    audit = [(d.action, d.actor) for d in ledger.decisions_for("trace-1")]
    assert audit == [("approved", "slack:U1")]
    assert channel.events == [("opened", "ap-1"), ("decided:approved", "ap-1")]


def test_racing_deciders_get_exactly_one_decision(ledger: SQLLedger) -> None:
    service = ApprovalService(ledger)
    service.open(request())
    results: list[str] = []

    def click(who: str) -> None:
        try:
            service.decide("ap-1", approve=who.endswith("a"), by=who)
            results.append("won")
        except AlreadyDecided:
            results.append("lost")

    threads = [
        threading.Thread(target=click, args=(f"slack:U{i}{'a' if i % 2 else 'b'}",))
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 5 + ["won"]
    decisions = [d for d in ledger.decisions_for("trace-1") if d.action in ("approved", "denied")]
    assert len(decisions) == 1


def test_approver_not_on_the_list_is_refused_recorded_and_changes_nothing(
    ledger: SQLLedger,
) -> None:
    policy = Policy.from_mapping(
        {
            "approvals": {
                "approvers": [
                    {"scope": {"team": "support"}, "allow": ["slack:U1", "slack-group:S9"]},
                    {"allow": ["console:root"]},
                ]
            }
        }
    )
    service = ApprovalService.from_settings(ledger, policy.approvals)
    filed = service.open(request())
    assert filed.approvers == ["console:root", "slack-group:S9", "slack:U1"]
    with pytest.raises(ApproverNotAllowed, match="slack:U2 may not decide"):
        service.decide("ap-1", approve=True, by=Approver("slack:U2"))
    assert service.get("ap-1").status == "pending"
    # Another process with no list configured still enforces the list filed with the request.
    console = ApprovalService(ledger)
    with pytest.raises(ApproverNotAllowed):
        console.decide("ap-1", approve=True, by="console:mallory")
    refused = [(d.action, d.actor) for d in ledger.decisions_for("trace-1")]
    assert refused == [("refused", "slack:U2"), ("refused", "console:mallory")]
    group = Approver("slack:U7", groups=frozenset({"slack-group:S9"}))
    assert console.decide("ap-1", approve=False, by=group).status == "denied"


def test_other_scopes_need_the_default_list(ledger: SQLLedger) -> None:
    approvers = Approvers([(lambda tags: tags.get("team") == "support", ["slack:U1"])])
    service = ApprovalService(ledger, approvers=approvers)
    service.open(request("ap-sales", tags={"team": "sales"}))
    with pytest.raises(ApproverNotAllowed):
        service.decide("ap-sales", approve=True, by="slack:U1")  # nobody may, but the expiry


def test_expiry_denies_by_default_without_a_click(ledger: SQLLedger) -> None:
    clock = Clock()
    channel = Recorder()
    service = ApprovalService(
        ledger, channels=[channel], expire_after=timedelta(minutes=30), clock=clock
    )
    filed = service.open(request())
    assert filed.expires_at is not None
    clock.now = T0 + timedelta(minutes=29)
    assert service.expire_due() == []
    clock.now = T0 + timedelta(minutes=30)
    (expired,) = service.expire_due()
    assert (expired.status, expired.decided_by) == ("expired", "expiry")
    assert ("expired:expired", "ap-1") in channel.events
    with pytest.raises(AlreadyDecided, match="already expired"):
        service.decide("ap-1", approve=True, by="slack:U1")
    assert [d.action for d in ledger.decisions_for("trace-1")] == ["expired"]


def test_expiry_can_approve_and_every_process_applies_the_filed_outcome(
    ledger: SQLLedger,
) -> None:
    clock = Clock()
    service = ApprovalService(
        ledger, expire_after=timedelta(minutes=5), on_expiry="approve", clock=clock
    )
    service.open(request())
    clock.now = T0 + timedelta(hours=1)
    other = ApprovalService(ledger, clock=clock)  # e.g. the console, configured differently
    expired = other.get("ap-1")  # looking at it applies the expiry
    assert (expired.status, expired.decided_by, expired.extra) == (
        "approved",
        "expiry",
        Decimal("0.3"),
    )


def test_a_failing_channel_loses_nothing(
    ledger: SQLLedger, caplog: pytest.LogCaptureFixture
) -> None:
    service = ApprovalService(ledger, channels=[Broken(), recorder := Recorder()])
    with caplog.at_level(logging.ERROR, logger="agent_finops"):
        service.open(request())
    assert "approval channel broken failed on request_opened" in caplog.text
    assert [r.approval_id for r in service.requests(status="pending")] == ["ap-1"]
    assert recorder.events == [("opened", "ap-1")]  # the other channels still hear of it


def test_the_same_step_asks_once(ledger: SQLLedger) -> None:
    service = ApprovalService(ledger)
    first = service.open(request("ap-1", step="node:a"))
    again = service.open(request("ap-2", step="node:a"))
    other = service.open(request("ap-3", step="node:b"))
    assert again.approval_id == first.approval_id and other.approval_id == "ap-3"
    nested = service.pending(thread_id="thread-1", trace_id="trace-1", step="node")
    assert nested == []  # "node" is not "node:a"'s parent step
    assert [
        r.approval_id for r in service.pending(thread_id="thread-1", trace_id="x", step="node:a")
    ] == ["ap-1"]


def test_resume_runs_only_registered_targets(ledger: SQLLedger) -> None:
    service = ApprovalService(ledger)
    service.open(request(resume_target="support-graph"))
    service.open(request("ap-2", resume_target="tests.evil:run", thread_id="thread-2"))
    seen: list[ResumeRequest] = []
    targets = ResumeTargets()
    targets.register("support-graph", seen.append)
    with pytest.raises(ConfigurationError, match="not decided yet"):
        service.resume(service.get("ap-1"), targets)
    decided = service.decide("ap-1", approve=True, by="console:alice", extra=Decimal(2))
    service.resume(decided, targets)
    (got,) = seen
    assert got.thread_id == "thread-1" and got.tags == {"team": "support", "task": "t1"}
    assert ApprovalAnswer.model_validate(got.answer).approve is True
    evil = service.decide("ap-2", approve=True, by="console:alice")
    with pytest.raises(UnknownResumeTarget, match=r"'tests\.evil:run'") as info:
        service.resume(evil, targets)
    assert info.value.known == ["support-graph"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"decision": "maybe"}, "decision"),
        ({"decision": "approve", "extra": "NaN"}, "extra"),
        ({"decision": "approve", "extra": -1}, "extra"),
        ({"decision": "approve", "extra": 0.5}, "extra"),
        ({"decision": "approve", "surprise": 1}, "surprise"),
        (["approve"], "resume"),
        ({"decision": "approve", "reason": "x" * 5000}, "reason"),
    ],
)
def test_bad_answers_name_the_field(value: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_answer(value)
    assert info.value.field == field


def test_answer_shorthands() -> None:
    assert parse_answer(None) is None and parse_answer({"note": "later"}) is None
    assert parse_answer(True) == ApprovalAnswer(decision=True)
    assert parse_answer("deny") == ApprovalAnswer(decision=False)
    full = parse_answer({"decision": "approve", "extra": "2.50", "by": "ops", "approval_id": "a"})
    assert full is not None and full.extra == Decimal("2.50") and full.by == "ops"
