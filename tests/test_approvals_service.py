"""ApprovalService: the deciding service's own allow-list, and expiries the run takes up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agent_finops import SQLLedger
from agent_finops.approvals import ApprovalService, Approver, Approvers
from agent_finops.exceptions import ApproverNotAllowed
from agent_finops.ledger import ApprovalRecord


def request(**overrides: Any) -> ApprovalRecord:
    values: dict[str, Any] = {
        "approval_id": uuid.uuid4().hex,
        "trace_id": "t1",
        "thread_id": "th1",
        "rule_id": "cap",
        "scope": {},
        "unit": "usd",
        "spent": Decimal(1),
        "limit": Decimal(1),
        "estimate": Decimal("0.1"),
        "policy_version": "v1",
        "created_at": datetime.now(UTC),
        "tags": {"team": "qa"},
    }
    values.update(overrides)
    return ApprovalRecord(**values)


def test_a_request_filed_without_a_list_is_checked_against_the_deciding_service(
    sqlite_ledger: SQLLedger,
) -> None:
    filed = ApprovalService(sqlite_ledger).open(request())  # the app had no allow-list
    assert filed.approvers is None
    strict = ApprovalService(
        sqlite_ledger, approvers=Approvers([(lambda tags: True, ["slack:U0LEAD"])])
    )
    assert not strict.may_decide("slack:U0OTHER", filed)
    assert strict.may_decide(Approver("slack:U0LEAD"), filed)
    with pytest.raises(ApproverNotAllowed):
        strict.decide(filed.approval_id, approve=True, by="slack:U0OTHER")
    assert strict.decide(filed.approval_id, approve=True, by="slack:U0LEAD").status == "approved"


def test_the_stored_list_rules_over_the_deciding_service(sqlite_ledger: SQLLedger) -> None:
    filed = ApprovalService(sqlite_ledger).open(request(approvers=["slack:U0A"]))
    lenient = ApprovalService(sqlite_ledger)  # no list of its own
    assert not lenient.may_decide("slack:U0B", filed) and lenient.may_decide("slack:U0A", filed)


def test_an_expiry_elsewhere_is_a_decision_the_run_takes_up_once(sqlite_ledger: SQLLedger) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    filed = ApprovalService(sqlite_ledger).open(request(expires_at=past))
    (expired,) = ApprovalService(sqlite_ledger).expire_due()  # another process's sweep
    assert expired.status == "expired"
    run = ApprovalService(sqlite_ledger)  # the resumed run's service
    assert run.begin_run(thread_id="th1", trace_id="t2")
    taken = run.take_decision(thread_id="th1", trace_id="t2")
    assert taken is not None and taken.approval_id == filed.approval_id
    assert taken.status == "expired" and taken.applied_at is not None
    assert run.take_decision(thread_id="th1", trace_id="t2") is None  # once
    assert not run.begin_run(thread_id="th1", trace_id="t3")
