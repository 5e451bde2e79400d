"""Checks across processes (`processes`, extended): one budget, several processes, no overspend."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from datetime import UTC, datetime, timedelta

from agent_finops.conformance import _race_worker as worker
from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, held_here, leased, usd
from agent_finops.conformance._registry import Subject, spec
from agent_finops.ledger import Claim, LeasedBudgetStore

processes = spec(Capability.PROCESSES)

PROCESSES, THREADS, CALLS = 4, 4, 25


@processes
def processes_racing_one_budget_never_cross_it(s: Subject) -> None:
    """4 processes x 4 threads, started together, on one hard $1.00 budget in one ledger.

    Spent + reserved never exceeds the limit, and the counter equals the exact sum of the
    settled actual amounts (after the reservations of "crashed" calls expire).
    """
    assert s.backend.reopen is not None and s.backend.address is not None
    store = s.store(clock=lambda: datetime.now(UTC))
    key, limit = f"race-{uuid.uuid4().hex[:8]}", D("1.00")
    # Create the counter up front so the race is about the limit, not about creating it.
    assert store.reserve("seed", [usd(key, str(limit), "0")], trace_id="t").granted
    store.release("seed")
    address = s.backend.address(s.ledger)
    spawn = multiprocessing.get_context("spawn")
    start, queue = spawn.Barrier(PROCESSES), spawn.Queue()
    args = (s.backend.reopen, address, key, str(limit), THREADS, CALLS)
    options = dict(s.backend.store_options)
    pool = [
        spawn.Process(target=worker.main, args=(start, queue, options, *args, n))
        for n in range(PROCESSES)
    ]
    for process in pool:
        process.start()
    try:
        reports = [queue.get(timeout=120) for _ in pool]
    finally:
        for process in pool:
            process.join(timeout=30)

    settled = [D(a) for r in reports for a in r.get("settled", [])]
    assert [e for r in reports for e in r["errors"]] == []
    assert [v for r in reports for v in r["violations"]] == []
    assert sum(r["refused"] for r in reports) > 0, "the race never reached the limit"
    store.expire(datetime.now(UTC) + timedelta(days=1))  # reservations of "crashed" calls
    spent, reserved, _ = store.counter(key) or (None, None, None)
    assert spent == sum(settled), "the counter must equal the settled actuals exactly"
    # Nothing in flight, the other workers gone: nothing is reserved but this store's own
    # unused lease (if it was not given back idle yet), which its view leaves out.
    assert reserved == 0
    if isinstance(store, LeasedBudgetStore):
        in_database = store.backing.counter(key)
        assert in_database is not None and in_database.reserved == held_here(store, key)
    assert spent is not None and D("0.5") < spent <= limit


KILLED_LEASE = 2.0
"""Seconds: the worker lease of the process that is killed (the default is 10)."""


@processes
def a_killed_workers_reservation_is_reclaimed_within_its_lease(s: Subject) -> None:
    """A process holding a 1-call budget is SIGKILLed; another reserves it within seconds.

    The dead process's reservation has the default 30-minute TTL: only its worker lease,
    no longer renewed, lets it go; the survivor's refused `reserve` reaps it.
    """
    assert s.backend.reopen is not None and s.backend.address is not None
    key = f"held-{uuid.uuid4().hex[:8]}"
    one = [Claim(key, "one-call", "calls", D(1), D(1))]
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Queue()
    address = s.backend.address(s.ledger)
    child = spawn.Process(
        target=worker.hold,
        args=(s.backend.reopen, address, key, KILLED_LEASE, ready, dict(s.backend.store_options)),
    )
    child.start()
    try:
        assert ready.get(timeout=120) == "held"
        store = s.store(clock=lambda: datetime.now(UTC))
        assert not store.reserve("survivor", one, trace_id="t").granted
        child.kill()  # SIGKILL: no `close()`, no `atexit`
        child.join(timeout=30)
        killed = time.monotonic()
        deadline = killed + KILLED_LEASE + 15
        while not store.reserve("survivor", one, trace_id="t").granted:
            assert time.monotonic() < deadline, "the dead worker's reservation was never reclaimed"
            time.sleep(0.05)
        waited = time.monotonic() - killed
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=30)
    assert waited < KILLED_LEASE + 5, f"reclaimed after {waited:.1f} s"
    assert store.counter(key) == (D(0), D(1), D(1))
    # A database reservation expired; a lease store's call lived only in the dead process.
    assert store.reservation_state(f"held-{key}") in ("expired", None if leased(s) else "-")
