"""SlackApprover in-process: one resume per decision, failures recorded, dead services' work taken over."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_helpers import CHANNEL

from agent_finops import SQLLedger
from agent_finops.approvals import ApprovalService, ResumeRequest, ResumeTargets
from agent_finops.ledger import ApprovalRecord
from agent_finops_slack import SlackApprover, SlackChannel, SlackSettings, web_client
from agent_finops_slack.testing import SlackEmulator


class Harness:
    def __init__(self, ledger: SQLLedger, slack: SlackEmulator, settings: SlackSettings) -> None:
        self.resumed: list[str] = []
        self.fail_with: Exception | None = None
        self.channel = SlackChannel(
            ledger,
            client=web_client(slack.bot_token, base_url=slack.base_url),
            settings=settings,
            background=False,
        )
        self.approvals = ApprovalService(ledger, channels=[self.channel])
        self.approver = SlackApprover(
            approvals=self.approvals,
            channel=self.channel,
            targets=ResumeTargets({"app": self._resume}),
            signing_secret="secret",
            workers=2,
        )

    def _resume(self, request: ResumeRequest) -> None:
        assert request.approval is not None
        self.resumed.append(request.approval.approval_id)
        if self.fail_with is not None:
            raise self.fail_with

    def settle(self) -> None:
        assert self.approver.resumer.wait_idle(10)


@pytest.fixture
def harness(ledger: SQLLedger, slack: SlackEmulator, settings: SlackSettings) -> Iterator[Harness]:
    h = Harness(ledger, slack, settings)
    yield h
    h.approver.close()


def test_one_decision_one_resume_and_the_loser_is_told(
    harness: Harness, slack: SlackEmulator, make_request: Callable[..., ApprovalRecord]
) -> None:
    request = harness.approvals.open(make_request())
    won = harness.approver.decide(request.approval_id, "U0A", approve=True, channel=CHANNEL)
    lost = harness.approver.decide(request.approval_id, "U0B", approve=False, channel=CHANNEL)
    harness.settle()
    assert won is not None and won.decided_by == "slack:U0A" and lost is None
    assert harness.resumed == [request.approval_id]
    (reply,) = slack.ephemerals("U0B")
    assert reply.startswith("Already approved by <@U0A> at <!date^")
    harness.approver.resumer.submit(harness.approvals.get(request.approval_id))  # again: no
    harness.settle()
    assert harness.resumed == [request.approval_id]
    assert harness.channel.store.resume_state(request.approval_id) == (
        "done",
        harness.channel.owner,
    )


def test_a_failing_resume_is_logged_and_recorded_not_retried(
    harness: Harness, make_request: Callable[..., ApprovalRecord], caplog: pytest.LogCaptureFixture
) -> None:
    harness.fail_with = RuntimeError("checkpointer is down")
    request = harness.approvals.open(make_request())
    with caplog.at_level(logging.ERROR, logger="agent_finops.slack"):
        harness.approver.decide(request.approval_id, "U0A", approve=True, channel=CHANNEL)
        harness.settle()
    assert any("resuming approval" in r.getMessage() and r.exc_info for r in caplog.records)
    state = harness.channel.store.resume_state(request.approval_id)
    assert state is not None and state[0] == "failed"
    harness.approver.sweep()
    harness.settle()
    assert harness.resumed == [request.approval_id]  # once
    assert harness.approvals.get(request.approval_id).status == "approved"  # the decision stands


def test_a_resume_a_dead_service_left_unfinished_is_taken_over(
    harness: Harness, make_request: Callable[..., ApprovalRecord]
) -> None:
    request = harness.approvals.open(make_request())
    harness.approvals.decide(request.approval_id, approve=True, by="slack:U0A")
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    store = harness.channel.store
    assert store.claim_resume(request.approval_id, owner="dead-host:1:x", now=long_ago)
    harness.approver.sweep()
    harness.settle()
    assert harness.resumed == [request.approval_id]
    harness.approver.sweep()
    harness.settle()
    assert harness.resumed == [request.approval_id]


def test_requests_expired_elsewhere_are_resumed_once_and_unresumable_ones_noted_once(
    ledger: SQLLedger,
    harness: Harness,
    make_request: Callable[..., ApprovalRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    console = ApprovalService(ledger)  # e.g. `agent-finops approvals list` sweeps expiry too
    expired = console.open(make_request(expires_at=past))
    orphan = console.open(make_request(thread_id=None, expires_at=past, rule_id="other"))
    assert {r.approval_id for r in console.expire_due()} == {
        expired.approval_id,
        orphan.approval_id,
    }
    with caplog.at_level(logging.WARNING, logger="agent_finops.slack"):
        for _ in range(3):
            harness.approver.sweep()
            harness.settle()
    assert harness.resumed == [expired.approval_id]
    warnings = [r for r in caplog.records if "cannot be resumed" in r.getMessage()]
    assert len(warnings) == 1


def test_wsgi_health_endpoint(harness: Harness) -> None:
    app = harness.approver.wsgi()
    seen: list[Any] = []

    def start_response(status: str, headers: list[Any]) -> None:
        seen.append(status)

    assert app({"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"}, start_response) == [b"ok"]
    assert seen == ["200 OK"]
