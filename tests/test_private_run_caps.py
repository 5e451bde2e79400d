"""Caps of runs without a thread: decided in memory, never a database transaction per run.

Such a run cannot be resumed, so no other process ever charges its counter
(`Claim.private`). A lease store decides it from the whole limit, with no grow; its spend
still reaches the counter with each call's cost event. A run with a thread is leased as
before (another worker may resume it).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent_finops import CostTracker, SQLLedger
from agent_finops.ledger import Claim, LeasedBudgetStore, Ledger
from agent_finops.policy import Policy, PolicyEngine

D = Decimal


@pytest.fixture
def ledger(memory_or_file_ledger: Ledger) -> Ledger:
    return memory_or_file_ledger


def leased(ledger: Ledger) -> LeasedBudgetStore:
    store = ledger.budget_store(leases=True)
    assert isinstance(store, LeasedBudgetStore)
    return store


def cap(amount: int, key: str = "cap|run=t1") -> list[Claim]:
    return [Claim(key, "cap", "tokens", D(100), D(amount), private=True)]


def no_grows(store: LeasedBudgetStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a private claim took a database lease")

    monkeypatch.setattr(store.backing, "grow_leases", refuse)


def test_a_private_cap_is_decided_in_memory_and_its_spend_reaches_the_counter(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = leased(ledger)
    no_grows(store, monkeypatch)
    assert store.reserve("a", cap(60), trace_id="t1").granted
    assert store.leased() == {}  # nothing taken from the database
    refused = store.reserve("b", cap(60), trace_id="t1")  # 60 held + 60 > 100
    assert not refused.granted
    assert refused.refusals[0].observed == D(60) and refused.refusals[0].amount == D(60)
    store.settle("a", {"tokens": 50})
    assert store.reserve("c", cap(50), trace_id="t1").granted  # 50 spent + 50 = 100
    settled = store.settle("c", {"tokens": 70})  # an overrun: charged in full
    assert settled.overruns and settled.overruns[0].used == D(120)
    assert not store.reserve("d", cap(1), trace_id="t1").granted
    # The database counter holds exactly what was spent, nothing reserved or leased.
    assert store.counter("cap|run=t1") == (D(120), D(0), D(100))
    assert store.private_held == 1
    store.end_private(["cap|run=t1"])
    assert store.private_held == 0
    store.close()


def test_a_private_refusal_still_names_the_other_rules_the_call_would_exceed(
    ledger: Ledger,
) -> None:
    store = leased(ledger)
    both = [
        *cap(101),
        Claim("daily|2026-12-03", "daily", "tokens", D(50), D(101)),
    ]
    refused = store.reserve("a", both, trace_id="t1")
    assert not refused.granted
    assert {r.rule_id for r in refused.refusals} == {"cap", "daily"}
    store.close()


def _call(e: PolicyEngine, n: int, *, trace: str, thread: str | None) -> Any:
    return e.check_before_model_call(
        call_id=f"{trace}-{n}",
        trace_id=trace,
        run_key=thread or trace,
        thread_id=thread,
        tags={"team": "support"},
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=1000,
        max_output_tokens=100,
    )


def test_the_engine_leases_a_threads_cap_and_keeps_a_thread_less_runs_in_memory(
    tmp_path: Path,
) -> None:
    policy = Policy.from_mapping(
        {"budgets": [{"id": "run-cap", "limit": "1", "period": "run", "action": "deny"}]}
    )
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        tracker = CostTracker(ledger)
        e = PolicyEngine(policy, tracker)
        store = e.budgets
        assert isinstance(store, LeasedBudgetStore)
        assert _call(e, 0, trace="trace-a", thread=None).action == "allow"
        assert store.private_held == 1 and store.leased() == {}
        # A thread can be resumed by another worker: its cap is leased from the database.
        assert _call(e, 0, trace="trace-b", thread="thread-b").action == "allow"
        assert [k for k in store.leased() if "thread-b" in k]
        for trace in ("trace-a", "trace-b"):
            e.check_after_model_call(f"{trace}-0", cost=D("0.0001"), tokens=1100)
        e.end_run("trace-a")
        assert store.private_held == 0  # a finished run's private cap is forgotten
        tracker.flush()
        spent = {k: store.counter(k) for k in ("run-cap|*|run=trace-a", "run-cap|*|run=thread-b")}
        assert all(c is not None and c.spent == D("0.0001") for c in spent.values()), spent
        e.close()
        tracker.close()
