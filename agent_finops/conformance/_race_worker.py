"""A worker process of the multi-process budget race (`processes` capability).

A module of the package, so that `multiprocessing` spawn can import it by name in the child.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from agent_finops.conformance._registry import Reopen
from agent_finops.ledger import Claim

__all__ = ["hold", "main", "race"]

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
CRASH_TTL = timedelta(milliseconds=200)


def main(start: Any, reports: Any, options: dict[str, Any], *args: Any) -> None:
    """Process entry point: wait for every process at `start`, race, put the report."""
    try:
        reports.put(race(*args, start=start, options=options))
    except BaseException as exc:
        reports.put({"errors": [f"process failed: {exc!r}"]})


def race(
    reopen: Reopen,
    address: str,
    counter_key: str,
    limit: str,
    threads: int,
    calls_per_thread: int,
    seed: int,
    *,
    start: Any = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hammer one hard budget from several threads; report what this process saw and did.

    `start` (a barrier shared by all processes) makes every process begin at once, after
    its slow imports and connection set-up, so that they really overlap.

    Each call reserves a random estimate (1 to 5 cents) and then, at random: settles a random
    actual no larger than the estimate (most calls), releases (the call failed), or walks
    away without settling (a crashed worker; its short-lived reservation must expire).
    """
    budget = Decimal(limit)
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
    with reopen(address) as ledger, ledger.budget_store(**(options or {})) as store:

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

        def worker(thread_no: int) -> None:
            try:
                calls(thread_no)
            except Exception as exc:  # reported to the check, which fails on any
                with lock:
                    report["errors"].append(f"thread {thread_no}: {exc!r}")

        store.counter(counter_key)  # connect before the start line
        if start is not None:
            start.wait(timeout=60)
        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    return report


def hold(
    reopen: Reopen,
    address: str,
    counter_key: str,
    lease: float,
    ready: Any,
    options: dict[str, Any] | None = None,
) -> None:
    """Process entry point: reserve the one call of a 1-call budget (`held-<key>`), say so, wait.

    The reservation's TTL is the default (30 minutes): only the worker lease (`lease`
    seconds, renewed by the store's upkeep thread while this process lives) can free it
    early once the process is killed.
    """
    try:
        with reopen(address) as ledger:
            store = ledger.budget_store(worker_lease=timedelta(seconds=lease), **(options or {}))
            claim = Claim(counter_key, "one-call", "calls", Decimal(1), Decimal(1))
            result = store.reserve(f"held-{counter_key}", [claim], trace_id="held")
            ready.put("held" if result.granted else "refused")
            while True:
                time.sleep(60)
    except BaseException as exc:
        ready.put(f"failed: {exc!r}")
