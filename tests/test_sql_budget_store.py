"""The SQL budget store's upkeep: worker leases, the reaper and the scheduled purge."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import inspect, text

from agent_finops.ledger import (
    DEFAULT_RESERVATION_RETENTION,
    DEFAULT_WORKER_LEASE,
    Claim,
    SQLLedger,
)


def _wait_for(condition: object, timeout: float) -> float:
    """Seconds until `condition()` is true; fails after `timeout`."""
    assert callable(condition)
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def _workers(ledger: SQLLedger) -> list[str]:
    with ledger.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("select worker_id from finops_budget_workers"))]


def test_defaults_are_seconds_for_dead_workers_and_a_day_of_idempotency() -> None:
    assert timedelta(seconds=10) == DEFAULT_WORKER_LEASE
    assert timedelta(days=1) == DEFAULT_RESERVATION_RETENTION


def test_finished_reservations_are_purged_on_schedule(shared_ledger: SQLLedger) -> None:
    now = lambda: datetime.now(UTC)  # noqa: E731
    claim = Claim("k", "r", "usd", D(1), D("0.1"))
    with shared_ledger.budget_store(clock=now, retention=timedelta(seconds=0.5)) as store:
        store.reserve("open", [claim], trace_id="t")
        store.reserve("done", [claim], trace_id="t")
        assert store.settle("done", {"usd": D("0.05")})
        assert store.reserve("done", [claim], trace_id="t").replayed  # kept: still idempotent
        _wait_for(lambda: store.reservation_state("done") is None, timeout=10)
        assert store.reservation_state("open") == "reserved"
        assert store.counter("k") == (D("0.05"), D("0.1"), D(1))


def test_no_retention_keeps_every_reservation(sqlite_ledger: SQLLedger) -> None:
    claim = Claim("k", "r", "usd", D(1), D("0.1"))
    with sqlite_ledger.budget_store(retention=None, worker_lease=timedelta(seconds=0.2)) as store:
        store.reserve("done", [claim], trace_id="t", now=datetime(2020, 1, 1, tzinfo=UTC))
        store.settle("done", {}, now=datetime(2020, 1, 1, tzinfo=UTC))
        time.sleep(0.5)  # a few upkeep beats
        assert store.reservation_state("done") == "settled"


def test_a_store_holds_a_lease_while_open_and_ends_it_on_close(shared_ledger: SQLLedger) -> None:
    claim = Claim("k", "r", "calls", D(1), D(1))
    lease = timedelta(seconds=0.4)
    store = shared_ledger.budget_store(worker_lease=lease)
    assert _workers(shared_ledger) == []  # registered at the first reservation
    assert store.reserve("left-open", [claim], trace_id="t").granted
    assert _workers(shared_ledger) == [store.worker_id]
    time.sleep(1.0)  # longer than the lease: the upkeep thread renews it
    with shared_ledger.budget_store() as other:
        assert other.expire() == []
        assert not other.reserve("other", [claim], trace_id="t").granted
        gone = store.worker_id
        store.close()  # its open reservation has no live worker any more
        assert _workers(shared_ledger) == [other.worker_id] and gone != other.worker_id
        assert other.expire() == ["left-open"]
        assert other.reserve("other", [claim], trace_id="t").granted


def test_the_reaper_runs_without_a_refusal(shared_ledger: SQLLedger) -> None:
    claim = Claim("k", "r", "usd", D(1), D("0.3"))
    lease = timedelta(seconds=0.2)
    with shared_ledger.budget_store(worker_lease=lease) as store:
        store.reserve("short", [claim], trace_id="t", ttl=timedelta(milliseconds=100))
        waited = _wait_for(lambda: store.reservation_state("short") == "expired", timeout=10)
        assert waited < 5
        assert store.counter("k") == (D(0), D(0), D(1))


def test_bad_lease_or_retention_is_refused(sqlite_ledger: SQLLedger) -> None:
    with pytest.raises(ValueError, match="worker_lease"):
        sqlite_ledger.budget_store(worker_lease=timedelta(0))
    with pytest.raises(ValueError, match="retention"):
        sqlite_ledger.budget_store(retention=timedelta(seconds=-1))


def test_the_schema_has_the_lease_and_purge_columns(sqlite_ledger: SQLLedger) -> None:
    inspector = inspect(sqlite_ledger.engine)
    assert "worker_id" in {c["name"] for c in inspector.get_columns("finops_reservations")}
    assert "ix_finops_reservations_finished" in {
        i["name"] for i in inspector.get_indexes("finops_reservations")
    }
    assert inspector.has_table("finops_budget_workers")
