"""Worker process for the multi-process budget race in `test_reservations.py`.

A plain module (not a test file) so that `multiprocessing` spawn can import it by name: the
test puts this directory on `sys.path`, which spawned children inherit.
"""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

from agent_finops.ledger import SQLLedger
from agent_finops.ledger._reservations import BudgetStore, Claim

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
CRASH_TTL = timedelta(milliseconds=200)


def main(start: Any, reports: Any, *args: Any) -> None:
    """Process entry point: wait for every process at `start`, race, put the report."""
    try:
        reports.put(race(*args, start=start))
    except BaseException as exc:
        reports.put({"errors": [f"process failed: {exc!r}"]})


def race(
    url: str,
    engine_kwargs: dict[str, Any],
    counter_key: str,
    limit: str,
    threads: int,
    calls_per_thread: int,
    seed: int,
    *,
    start: Any = None,
) -> dict[str, Any]:
    """Hammer one hard budget from several threads; report what this process saw and did.

    `start` (a barrier shared by all processes) makes every process begin at once, after
    its slow imports and connection set-up, so that they really overlap.

    Each call reserves a random estimate (1 to 5 cents) and then, at random: settles a random
    actual no larger than the estimate (most calls), releases (the call failed), or walks
    away without settling (a crashed worker; its short-lived reservation must expire).
    """
    budget = Decimal(limit)
    ledger = SQLLedger.from_url(url, auto_setup=False, **engine_kwargs)
    store = BudgetStore(ledger.engine, auto_setup=False)
    lock = threading.Lock()
    report: dict[str, Any] = {
        "settled": [],
        "granted": 0,
        "refused": 0,
        "released": 0,
        "crashed": 0,
        "violations": [],
        "errors": [],
    }

    def worker(thread_no: int) -> None:
        try:
            calls(thread_no)
        except Exception as exc:  # reported to the test, which fails on any
            with lock:
                report["errors"].append(f"thread {thread_no}: {exc!r}")

    def calls(thread_no: int) -> None:
        rng = random.Random(seed * 1000 + thread_no)
        for i in range(calls_per_thread):
            call_id = f"race-{seed}-{thread_no}-{i}"
            estimate = CENT * rng.randint(1, 5)
            fate = rng.random()
            crashed = fate < 0.05
            claim = Claim(counter_key, "race", "usd", budget, estimate)
            result = store.reserve(
                call_id, [claim], trace_id=f"trace-{seed}", ttl=CRASH_TTL if crashed else None
            )
            seen = store.counter(counter_key)
            if seen is not None and seen.spent + seen.reserved > budget:
                with lock:
                    report["violations"].append(f"{call_id}: {seen}")
            if not result.granted:
                with lock:
                    report["refused"] += 1
                continue
            with lock:
                report["granted"] += 1
            if crashed:
                with lock:
                    report["crashed"] += 1
            elif fate < 0.15:
                store.release(call_id)
                with lock:
                    report["released"] += 1
            else:
                actual = (estimate * Decimal(rng.random())).quantize(MICRO)
                if store.settle(call_id, {"usd": actual}):
                    with lock:
                        report["settled"].append(str(actual))

    try:
        store.counter(counter_key)  # connect before the start line
        if start is not None:
            start.wait(timeout=60)
        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        store.close()
        ledger.close()
    return report
