"""Checks of approval requests (`approvals`, base)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import approval, raises
from agent_finops.conformance._registry import T0, Subject, spec
from agent_finops.exceptions import AlreadyDecided, ApprovalNotFound, ConfigurationError

approvals = spec(Capability.APPROVALS)


@approvals
def approval_is_decided_exactly_once(s: Subject) -> None:
    """The first decision wins; a second raises `AlreadyDecided`; ids may be prefixes."""
    ledger = s.ledger
    ledger.add_approval(approval())
    ledger.add_approval(approval())  # idempotent
    (pending,) = ledger.list_approvals(status="pending")
    assert pending.spent == Decimal("24.9")
    decided = ledger.decide_approval("ap-", status="approved", by="alice", at=T0, extra=Decimal(2))
    assert (decided.status, decided.decided_by, decided.extra) == ("approved", "alice", Decimal(2))
    with raises(AlreadyDecided, match="already approved") as info:
        ledger.decide_approval("ap-1", status="denied", by="bob", at=T0)
    assert (info.value.status, info.value.decided_by) == ("approved", "alice")
    with raises(ApprovalNotFound):
        ledger.decide_approval("nope", status="denied", by="bob", at=T0)
    ledger.add_approval(approval("ap-2"))
    ledger.decide_approval("ap-2", status="approved", by="carol", at=T0, extra=Decimal("0.5"))
    extras = {
        a.approval_id: a.extra
        for a in ledger.list_approvals(status="approved", thread_id="thread-9")
    }
    assert extras == {"ap-1": Decimal(2), "ap-2": Decimal("0.5")}


@approvals
def approval_round_trip_and_idempotent_add(s: Subject) -> None:
    """Every field reads back; adding the same id again keeps the first request."""
    request = approval(
        expires_at=T0 + timedelta(hours=1),
        resume_target="support-graph",
        counter_key="support-daily|team=support|2026-11-22",
        tags={"team": "support"},
        message="over budget",
    )
    stored = s.ledger.add_approval(request)
    assert stored == request
    again = s.ledger.add_approval(approval(message="a different request, same id"))
    assert again.message == "over budget"
    assert s.ledger.get_approval("ap-1") == request
    assert s.ledger.find_approval("ap-1") == request


@approvals
def approval_lookups_raise_or_return_none(s: Subject) -> None:
    """`get_approval` raises `ApprovalNotFound` (candidates when ambiguous); `find_` is None."""
    s.ledger.add_approval(approval("ap-10"))
    s.ledger.add_approval(approval("ap-11"))
    assert s.ledger.get_approval("ap-10").approval_id == "ap-10"
    with raises(ApprovalNotFound) as ambiguous:
        s.ledger.get_approval("ap-1")
    assert ambiguous.value.candidates == ["ap-10", "ap-11"]
    with raises(ApprovalNotFound) as absent:
        s.ledger.get_approval("zz")
    assert (absent.value.key, absent.value.candidates) == ("zz", [])
    assert s.ledger.find_approval("zz") is None
    assert s.ledger.find_approval("ap-1") is None  # a full id only, never a prefix


@approvals
def list_approvals_filters_newest_first(s: Subject) -> None:
    """Filters by status, trace and thread; newest first; honours the limit."""
    for i in range(4):
        s.ledger.add_approval(
            approval(
                f"ap-{i}",
                trace=f"trace-{i % 2}",
                thread_id=f"thread-{i % 2}",
                created_at=T0 + timedelta(minutes=i),
            )
        )
    s.ledger.decide_approval("ap-3", status="denied", by="bob", at=T0)
    assert [a.approval_id for a in s.ledger.list_approvals()] == ["ap-3", "ap-2", "ap-1", "ap-0"]
    assert [a.approval_id for a in s.ledger.list_approvals(limit=2)] == ["ap-3", "ap-2"]
    assert [a.approval_id for a in s.ledger.list_approvals(status="pending")] == [
        "ap-2",
        "ap-1",
        "ap-0",
    ]
    assert [a.approval_id for a in s.ledger.list_approvals(trace_id="trace-1")] == ["ap-3", "ap-1"]
    assert [a.approval_id for a in s.ledger.list_approvals(thread_id="thread-0")] == [
        "ap-2",
        "ap-0",
    ]
    with raises(ConfigurationError, match="limit"):
        s.ledger.list_approvals(limit=0)


@approvals
def expiry_is_a_decision(s: Subject) -> None:
    """`decide_approval(status="expired", by="expiry")` decides once, like any decision."""
    s.ledger.add_approval(approval(expires_at=T0 + timedelta(minutes=5)))
    expired = s.ledger.decide_approval(
        "ap-1", status="expired", by="expiry", at=T0 + timedelta(minutes=6)
    )
    assert (expired.status, expired.decided_by) == ("expired", "expiry")
    assert expired.decided_at == T0 + timedelta(minutes=6)
    with raises(AlreadyDecided, match="already expired"):
        s.ledger.decide_approval("ap-1", status="approved", by="alice", at=T0)
    with raises(ConfigurationError, match="status"):
        s.ledger.decide_approval("ap-1", status="pending", by="alice", at=T0)  # type: ignore[arg-type]
    # The paused run takes the expiry up like a denial.
    taken = s.ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0)
    assert taken is not None and taken.status == "expired"


@approvals
def due_approvals_are_pending_ones_past_their_expiry(s: Subject) -> None:
    """Pending with `expires_at <= now`, soonest expiry first; never decided or unexpiring."""
    s.ledger.add_approval(approval("late", expires_at=T0 + timedelta(minutes=2)))
    s.ledger.add_approval(approval("early", expires_at=T0 + timedelta(minutes=1)))
    s.ledger.add_approval(approval("future", expires_at=T0 + timedelta(hours=1)))
    s.ledger.add_approval(approval("never"))
    s.ledger.add_approval(approval("decided", expires_at=T0))
    s.ledger.decide_approval("decided", status="approved", by="alice", at=T0)
    now = T0 + timedelta(minutes=2)
    assert [a.approval_id for a in s.ledger.due_approvals(now)] == ["early", "late"]
    assert [a.approval_id for a in s.ledger.due_approvals(now, limit=1)] == ["early"]
    assert s.ledger.due_approvals(T0) == []
    s.ledger.decide_approval("early", status="expired", by="expiry", at=now)
    assert [a.approval_id for a in s.ledger.due_approvals(now)] == ["late"]


@approvals
def a_decision_is_taken_up_once(s: Subject) -> None:
    """`take_decision` returns each decision once; `has_open_requests` follows along."""
    ledger = s.ledger
    assert not ledger.has_open_requests(thread_id="thread-9", trace_id=None)
    ledger.add_approval(approval())
    assert ledger.has_open_requests(thread_id="thread-9", trace_id=None)
    assert ledger.has_open_requests(thread_id=None, trace_id="trace-1")
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None  # pending
    ledger.decide_approval("ap-1", status="denied", by="bob", at=T0)
    assert ledger.has_open_requests(thread_id="thread-9", trace_id=None)  # not taken up yet
    taken = ledger.take_decision(thread_id=None, trace_id="trace-1", at=T0 + timedelta(seconds=1))
    assert taken is not None and (taken.approval_id, taken.status) == ("ap-1", "denied")
    assert taken.applied_at == T0 + timedelta(seconds=1)
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None
    assert not ledger.has_open_requests(thread_id="thread-9", trace_id=None)
    assert ledger.get_approval("ap-1").applied_at == T0 + timedelta(seconds=1)


@approvals
def decisions_are_taken_oldest_first_and_marked_applied(s: Subject) -> None:
    """The oldest decided request comes first; `mark_applied` takes one up by id, once."""
    ledger = s.ledger
    for i in range(3):
        ledger.add_approval(approval(f"ap-{i}", created_at=T0 + timedelta(minutes=i)))
        ledger.decide_approval(f"ap-{i}", status="approved", by="alice", at=T0)
    ledger.mark_applied("ap-0", at=T0)
    ledger.mark_applied("ap-0", at=T0 + timedelta(hours=1))  # no-op: applied already
    ledger.mark_applied("no-such-request", at=T0)  # no-op
    assert ledger.get_approval("ap-0").applied_at == T0
    first = ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0)
    second = ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0)
    assert (first and first.approval_id, second and second.approval_id) == ("ap-1", "ap-2")
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None


@approvals
def async_twins_of_the_approval_calls(s: Subject) -> None:
    """`aget_approval`, `alist_approvals`, `adecide_approval`, `atake_decision`, ... work."""
    ledger = s.ledger
    ledger.add_approval(approval())

    async def main() -> list[Any]:
        found = await ledger.aget_approval("ap")
        listed = await ledger.alist_approvals(status="pending")
        is_open = await ledger.ahas_open_requests(thread_id="thread-9", trace_id=None)
        decided = await ledger.adecide_approval("ap-1", status="approved", by="alice", at=T0)
        taken = await ledger.atake_decision(thread_id="thread-9", trace_id=None, at=T0)
        await ledger.amark_applied("ap-1", at=T0)
        missing = await ledger.afind_approval("zz")
        return [found.approval_id, len(listed), is_open, decided.status, taken, missing]

    found, listed, is_open, status, taken, missing = asyncio.run(main())
    assert (found, listed, is_open, status, missing) == ("ap-1", 1, True, "approved", None)
    assert taken is not None and taken.approval_id == "ap-1"
