"""What a lease grow costs the guarded call that needs it, with the ledger writer idle and busy.

    python bench/bench_grow.py [--calls 60] [--rounds 2] [--postgres URL] [--no-sqlite]

A grow is the one database round trip left on a guarded call's path with budget leases: the
first call of a new task (its cap is shared across processes) or of a counter whose slice is
used up. Each sample is one such call through a `PolicyEngine` (bench_decisions' policy, a
task never seen before), timed from `check_before_model_call` to `check_after_model_call`,
together with the grow inside it (`SQLBudgetStore.grow_leases`).

- `writer idle`: the tracker's background writer has nothing queued (flushed, 10 ms pause);
- `writer busy`: 100 ordinary guarded calls just before, so the writer is writing their
  records while the grow waits on the database: the grow's answer then also waits for the
  GIL unless the writer steps aside (`agent_finops._foreground`).

The figure to watch is busy / idle (1.0x: the writer costs a grow nothing). SQLite (a file
ledger) and, with `--postgres` or AGENT_FINOPS_TEST_POSTGRES_URL, PostgreSQL (a throwaway
schema).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decisions import (
    ACTUAL_COST,
    ACTUAL_TOKENS,
    INPUT_TOKENS,
    MAX_OUTPUT_TOKENS,
    MODEL,
    POLICY,
    PROVIDER,
)
from bench_reservations import _postgres_schema

from agent_finops import CostTracker, SQLLedger
from agent_finops.ledger import SQLBudgetStore
from agent_finops.policy import Policy, PolicyEngine

BUSY_CALLS = 100


@contextmanager
def _timed_grows() -> Iterator[list[float]]:
    """Milliseconds of every `SQLBudgetStore.grow_leases` while inside."""
    grows: list[float] = []
    original = SQLBudgetStore.grow_leases

    def timed(self: SQLBudgetStore, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            grows.append((time.perf_counter() - start) * 1e3)

    SQLBudgetStore.grow_leases = timed  # type: ignore[method-assign]
    try:
        yield grows
    finally:
        SQLBudgetStore.grow_leases = original  # type: ignore[method-assign]


def _guarded(engine: PolicyEngine, task: str) -> float:
    """One guarded call on `task` in a run of its own; milliseconds, before to after."""
    call_id = uuid.uuid4().hex
    start = time.perf_counter()
    engine.check_before_model_call(
        call_id=call_id,
        trace_id=call_id,
        run_key=call_id,
        tags={"team": "support", "agent": "researcher", "task": task},
        model=MODEL,
        provider=PROVIDER,
        input_tokens=INPUT_TOKENS,
        max_output_tokens=MAX_OUTPUT_TOKENS,
    )
    engine.check_after_model_call(call_id, cost=ACTUAL_COST, tokens=ACTUAL_TOKENS)
    elapsed = (time.perf_counter() - start) * 1e3
    engine.end_run(call_id)
    return elapsed


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(
    ledger: SQLLedger, calls: int, rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Per mode: (call ms, grow ms) over `rounds` rounds of `calls` new-task calls."""
    tracker = CostTracker(ledger, tags={"team": "support"})
    engine = PolicyEngine(Policy.from_mapping(POLICY, source="bench"), tracker)
    tag = uuid.uuid4().hex[:8]
    out: dict[str, tuple[list[float], list[float]]] = {
        "writer idle": ([], []),
        "writer busy": ([], []),
    }
    try:
        for _ in range(20):  # warm-up: imports, price look-ups, connections
            _guarded(engine, f"{tag}-warm-{uuid.uuid4().hex}")
        for r in range(rounds):
            for mode in (
                ("writer idle", "writer busy") if r % 2 == 0 else ("writer busy", "writer idle")
            ):
                before: Callable[[], None]
                if mode == "writer idle":

                    def before() -> None:
                        tracker.flush()
                        time.sleep(0.01)
                else:

                    def before() -> None:
                        for _ in range(BUSY_CALLS):
                            _guarded(engine, f"{tag}-busy")

                latencies, grows = out[mode]
                with _timed_grows() as timed:
                    for _ in range(calls):
                        before()
                        mark = len(timed)
                        latencies.append(_guarded(engine, f"{tag}-{uuid.uuid4().hex}"))
                        grows.extend(timed[mark:])
        tracker.flush()
    finally:
        engine.close()
        tracker.close()
    return out


def report(name: str, out: dict[str, tuple[list[float], list[float]]]) -> None:
    print(f"\n== {name}")
    print(
        f"   {'mode':<12} {'samples':>7} {'call P50':>9} {'call P90':>9} {'grow P50':>9} {'grow P90':>9}  (ms)"
    )
    for mode, (calls, grows) in out.items():
        print(
            f"   {mode:<12} {len(calls):7d} {statistics.median(calls):9.2f} {_p(calls, 0.9):9.2f}"
            f" {statistics.median(grows):9.2f} {_p(grows, 0.9):9.2f}"
        )
    idle, busy = out["writer idle"][1], out["writer busy"][1]
    print(
        f"   busy / idle: grow P50 {statistics.median(busy) / statistics.median(idle):.2f}x,"
        f" P90 {_p(busy, 0.9) / _p(idle, 0.9):.2f}x"
    )


def main() -> None:
    """Measure SQLite, then PostgreSQL when a URL is given."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=60, help="new-task calls per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("AGENT_FINOPS_TEST_POSTGRES_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.no_sqlite:
        with (
            tempfile.TemporaryDirectory() as tmp,
            SQLLedger.from_url(f"sqlite:///{tmp}/grow.sqlite") as ledger,
        ):
            report("SQLite file", measure(ledger, args.calls, args.rounds))
    if args.postgres:
        with (
            _postgres_schema(args.postgres) as kwargs,
            SQLLedger.from_url(args.postgres, **kwargs) as ledger,
        ):  # type: ignore[arg-type]
            report("PostgreSQL", measure(ledger, args.calls, args.rounds))


if __name__ == "__main__":
    main()
