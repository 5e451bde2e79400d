"""Checks across processes (`processes`, extended): one budget, several processes, no overspend."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta

from agent_finops.conformance import _race_worker as worker
from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, usd
from agent_finops.conformance._registry import Subject, spec

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
    pool = [
        spawn.Process(target=worker.main, args=(start, queue, *args, n)) for n in range(PROCESSES)
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
    assert reserved == 0
    assert spent is not None and D("0.5") < spent <= limit
