"""Bytes on disk per guarded call on SQLite, with settled reservations kept or purged.

Run: `python bench/bench_storage.py [--calls N] [--retention SECONDS]`.

N guarded calls (`PolicyEngine.check_before_model_call` + `check_after_model_call`: four
claims reserved and settled, decisions recorded by the tracker's background writer), the
policy of bench/bench_decisions.py, against a fresh SQLite file ledger, twice:

- `kept`: `ledger.budget_store(retention=None)`: finished reservations are never purged
  (what every release before the scheduled purge did);
- `purged`: `ledger.budget_store(retention=R)`: the store's upkeep thread deletes finished
  reservations older than R (the default is a day; a short R shows the steady state within
  a short run);
- `leases`: the engine's default store (budget leases, `LeasedBudgetStore`): no reservation
  row per call at all, a lease row per worker and counter.

Printed per mode: the file's size (database + WAL) per call, the reservations table's size
per call (SQLite's `dbstat`: its pages and its indexes' pages), and the reservations left.
SQLite reuses the pages a purge frees, so the file stops growing once the purge keeps up;
it does not shrink (`VACUUM` would). Quick: about 10 s for the defaults.

`--tracking 100000,1000000`: instead, tracking only (no policy), bytes on disk per tracked
call after each number of calls: the records bench_tracking's graph makes (a run of 20
calls, each call a node span and a model call), driven through the `RunGuard` directly
(the framework's time is not the point here) into one SQLite file. Printed per checkpoint:
the file (database + WAL, after a checkpoint) per call, and each table's and index's bytes
per call (`dbstat`). 1M calls take several minutes.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from agent_finops import CostTracker, normalize_usage
from agent_finops.guard import RunGuard
from agent_finops.ledger import SQLLedger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decisions import POLICY, _Calls
from bench_tracking import CALLS_PER_RUN, MODEL, USAGE

from agent_finops.policy import Policy, PolicyEngine

RESERVATION_OBJECTS = (
    "finops_reservations",
    "ix_finops_reservations_open",
    "ix_finops_reservations_finished",
)


def _sizes(path: Path) -> tuple[int, int, int]:
    """(file bytes incl. WAL, reservation table + index bytes, reservations kept)."""
    wal = Path(f"{path}-wal")
    file_bytes = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    with sqlite3.connect(path) as conn:
        marks = ", ".join("?" * len(RESERVATION_OBJECTS))
        table_bytes = conn.execute(
            f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})",
            RESERVATION_OBJECTS,
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM finops_reservations").fetchone()[0]
    return file_bytes, int(table_bytes), int(rows)


def run(mode: str, calls: int, retention: timedelta | None, tmp: Path) -> dict[str, float]:
    """N guarded calls on a fresh file; the sizes per call after them."""
    path = tmp / f"{mode}.sqlite"
    with SQLLedger.from_url(f"sqlite:///{path}") as ledger:
        tracker = CostTracker(ledger, tags={"team": "support"})
        leases = mode == "leases"
        with ledger.budget_store(retention=retention) as store:
            engine = PolicyEngine(  # "leases": the engine's own default store
                Policy.from_mapping(POLICY, source="bench"),
                tracker,
                budgets=None if leases else store,
            )
            guarded = _Calls(engine, per_run=20)
            start = time.perf_counter()
            for _ in range(calls):
                guarded.step()
            elapsed = time.perf_counter() - start
            if retention is not None:  # one more purge after the last call
                time.sleep(retention.total_seconds() + 1.5)
            tracker.flush()
        tracker.close()
    file_bytes, table_bytes, rows = _sizes(path)
    return {
        "file_per_call": file_bytes / calls,
        "reservations_per_call": table_bytes / calls,
        "rows": rows,
        "calls_per_s": calls / elapsed,
    }


def tracking(checkpoints: list[int], tmp: Path) -> None:
    """Tracking-only calls into one file; bytes per tracked call at each checkpoint."""
    path = tmp / "tracking.sqlite"
    usage = normalize_usage(USAGE)
    print(f"tracking only (no policy), {CALLS_PER_RUN} calls a run, one SQLite file")
    with SQLLedger.from_url(f"sqlite:///{path}") as ledger:
        guard = RunGuard(CostTracker(ledger, tags={"team": "bench"}))
        done = 0
        start = time.perf_counter()
        for target in sorted(checkpoints):
            while done < target:
                run_id = str(uuid.uuid4())
                guard.open_step(run_id, parent_id=None, name="loop", kind="run")
                for _ in range(CALLS_PER_RUN):
                    node, call = str(uuid.uuid4()), str(uuid.uuid4())
                    guard.open_step(node, parent_id=run_id, name="agent", kind="node", node="agent")
                    guard.before_model_call(
                        call,
                        parent_id=node,
                        name="ScriptedChatModel",
                        model=MODEL,
                        provider="openai",
                        input_tokens=0,
                    )
                    guard.after_model_call(call, usage=usage)
                    guard.close_step(node)
                guard.close_step(run_id)
                done += CALLS_PER_RUN
                if done % 10_000 == 0:
                    # This loop makes calls faster than the writer thread (on the same GIL)
                    # writes them; unpaced, its queue grows without bound (docs/benchmarks.md).
                    guard.tracker.flush(timeout=None)
            guard.tracker.flush(timeout=None)
            elapsed = time.perf_counter() - start
            _report_tracking(path, done, elapsed)
        guard.close()


def _report_tracking(path: Path, calls: int, elapsed: float) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        objects = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
        events, spans = (
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("finops_cost_events", "finops_spans")
        )
    wal = Path(f"{path}-wal")
    file_bytes = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    assert events == calls, (events, calls)
    print(
        f"{calls:>9,} calls: file {file_bytes / calls:6,.0f} B/call "
        f"({spans / calls:.2f} span rows a call, {calls / elapsed:,.0f} calls/s)"
    )
    for name, size in objects:
        if size / calls >= 1:
            print(f"           {name:40} {size / calls:6,.0f} B/call")


def main() -> None:
    """Both modes, then the table (or the tracking-only figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--retention", type=float, default=1.0, help="seconds (purged mode)")
    parser.add_argument(
        "--tracking", help="tracking only: bytes per call at these counts (e.g. 100000,1000000)"
    )
    args = parser.parse_args()
    if args.tracking:
        with tempfile.TemporaryDirectory() as tmp:
            tracking([int(n) for n in args.tracking.split(",")], Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "kept": run("kept", args.calls, None, Path(tmp)),
            "purged": run("purged", args.calls, timedelta(seconds=args.retention), Path(tmp)),
            "leases": run("leases", args.calls, None, Path(tmp)),
        }
    print(f"{args.calls} guarded calls on SQLite (purged: retention {args.retention:g} s)")
    print(
        f"{'mode':8} {'file B/call':>12} {'reservations B/call':>20} {'rows kept':>10} {'calls/s':>8}"
    )
    for mode, r in results.items():
        print(
            f"{mode:8} {r['file_per_call']:12,.0f} {r['reservations_per_call']:20,.0f}"
            f" {r['rows']:10,.0f} {r['calls_per_s']:8,.0f}"
        )


if __name__ == "__main__":
    main()
