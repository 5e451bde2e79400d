"""How soon a SIGKILLed worker's reservation is reclaimed, on SQLite and PostgreSQL.

Run: `python bench/bench_reclaim.py [--leases 2,10] [--repeat 3] [--postgres URL]`.

A child process reserves the only call of a 1-call budget (default TTL: 30 minutes) with a
store of worker lease L, says so and is killed with SIGKILL; the parent retries `reserve`
every 20 ms and prints the seconds from the kill to the grant. Expected: about L (the
lease outlives the last renewal, made at most L/4 before the kill). PostgreSQL runs in a
throwaway schema when `--postgres` or `AGENT_FINOPS_TEST_POSTGRES_URL` gives a URL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from agent_finops.conformance import postgres_schema
from agent_finops.ledger import Claim, SQLLedger


def _claims(key: str) -> list[Claim]:
    return [Claim(key, "one-call", "calls", Decimal(1), Decimal(1))]


def _hold(url: str, key: str, lease: float, ready: Any) -> None:
    with SQLLedger.from_url(url) as ledger:
        store = ledger.budget_store(worker_lease=timedelta(seconds=lease))
        ready.put(store.reserve(f"held-{key}", _claims(key), trace_id="held").granted)
        while True:
            time.sleep(60)


def reclaim_seconds(url: str, lease: float) -> float:
    """Seconds from the SIGKILL of a holder to the survivor's grant."""
    key = uuid.uuid4().hex[:8]
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Queue()
    child = spawn.Process(target=_hold, args=(url, key, lease, ready))
    child.start()
    try:
        assert ready.get(timeout=60) is True
        with SQLLedger.from_url(url) as ledger, ledger.budget_store() as store:
            assert not store.reserve(key, _claims(key), trace_id="t").granted
            child.kill()
            child.join(timeout=30)
            killed = time.monotonic()
            while not store.reserve(key, _claims(key), trace_id="t").granted:
                time.sleep(0.02)
            return time.monotonic() - killed
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=30)


def main() -> None:
    """Every backend and lease, `--repeat` times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", default="2,10", help="seconds, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("AGENT_FINOPS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    leases = [float(x) for x in args.leases.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        _report("sqlite", f"sqlite:///{tmp}/ledger.sqlite", leases, args.repeat)
    if args.postgres:
        with postgres_schema(args.postgres) as url:
            _report("postgresql", url, leases, args.repeat)


def _report(name: str, url: str, leases: list[float], repeat: int) -> None:
    for lease in leases:
        times = [reclaim_seconds(url, lease) for _ in range(repeat)]
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(f"{name:10} lease {lease:g} s: reclaimed after {shown} s", flush=True)


if __name__ == "__main__":
    main()
