"""Checks of durability and schema (`persistent`, `migrations`, extended)."""

from __future__ import annotations

from typing import Any, cast

from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, approval, event, run, usd
from agent_finops.conformance._registry import T0, Subject, spec


@spec(Capability.PERSISTENT)
def records_and_budgets_survive_reopening(s: Subject) -> None:
    """Runs, events, approvals, counters and reservations read back from a reopened ledger."""
    s.ledger.write(runs=[run(thread_id="th")], events=[event("e1", "0.25")])
    s.ledger.add_approval(approval())
    with s.ledger.budget_store(clock=lambda: T0) as store:
        store.reserve("open", [usd("k", "1.00", "0.40")], trace_id="t")
        store.reserve("done", [usd("k", "1.00", "0.10")], trace_id="t")
        store.settle("done", {"usd": D("0.05")})
    s.ledger.close()
    with s.reopened() as again, again.budget_store(clock=lambda: T0) as store:
        (summary,) = again.list_runs(thread_id="th")
        assert summary.cost == D("0.25")
        assert again.get_approval("ap-1").status == "pending"
        assert store.counter("k") == (D("0.05"), D("0.40"), D(1))
        assert store.reservation_state("open") == "reserved"
        assert store.reserve("done", [usd("k", "1.00", "0.10")], trace_id="t").replayed


@spec(Capability.MIGRATIONS)
def schema_version_is_kept_by_setup(s: Subject) -> None:
    """`schema_version()` is set, and `setup()` again (here or on reopening) keeps it."""
    versioned = cast(Any, s.ledger)
    version = versioned.schema_version()
    assert isinstance(version, int) and version >= 1
    s.ledger.write(runs=[run()])
    s.ledger.setup()
    assert versioned.schema_version() == version
    if s.backend.reopen is not None and s.backend.address is not None:
        with s.reopened() as again:
            again.setup()
            assert cast(Any, again).schema_version() == version
            assert [r.run.trace_id for r in again.list_runs()] == ["trace-1"]
