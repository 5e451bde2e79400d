"""Policy decision latency per guarded model call (reserve + settle) on SQLite and PostgreSQL.

Run: `python bench/bench_decisions.py [--iterations N] [--postgres URL] [--check]`.

Measured at the engine level, as an integration calls it: a `PolicyEngine` on a
`CostTracker` whose ledger is a SQLite file (WAL, made by `SQLLedger.from_url`) and then
PostgreSQL (a throwaway schema, dropped afterwards; measured when `--postgres` or
`AGENT_FINOPS_TEST_POSTGRES_URL` gives a URL). One sample is one
`check_before_model_call(...)` (loop rules, price estimate, one atomic reservation on every
applicable limit) plus its `check_after_model_call(...)` (settle at the actual cost).

The policy has four claims per call: a daily team budget with thresholds (pause), a
per-task cap, a per-run cap and a per-agent rate limit, plus a burst loop rule. Runs are
`--calls-per-run` calls long (20) and tasks five runs long, so counters keep being created
as in production; calls that open a new run are also reported apart.

Modes, interleaved in rounds so background load hits them all alike:

- `engine`: decisions recorded as in production, queued to the tracker's background
  writer; its SQLAlchemy work shares the GIL (and, on SQLite, the database write lock);
- `engine, no recording`: the same engine on a tracker whose `record_decision` is a no-op,
  so the split between deciding and recording is visible;
- `store reserve+settle`: `BudgetStore.reserve` + `settle` alone with four fixed claims
  (no policy, no pricing, no recording), on the same engine;
- `write txn`: one pooled checkout, a one-row upsert and a commit (the durable-write floor;
  a decision needs two: reserve and settle);
- PostgreSQL only, `engine, sync commit off`: the recording engine on a
  `ledger.budget_store(durable_commits=False)` (budget commits do not wait for the WAL flush).

`--repeat N` runs everything N times (fresh database each time, backends alternating) and
ends with the median over the runs of each figure. Targets (from the issue): P99 of `engine`
under 0.5 ms on SQLite and under 2 ms on PostgreSQL; `--check` exits 1 if the median P99
misses one.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent_finops import CostTracker
from agent_finops.ledger import BudgetStore, Claim, DecisionRecord, SQLLedger, Unit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reservations import _postgres_schema

from agent_finops.policy import Policy, PolicyEngine

TARGETS_MS = {"sqlite": 0.5, "postgresql": 2.0}
"""From the issue: P99 decision latency per guarded call on this machine."""

MODEL, PROVIDER = "gpt-4o-mini", "openai"
INPUT_TOKENS, MAX_OUTPUT_TOKENS = 1_200, 512
ACTUAL_COST, ACTUAL_TOKENS = Decimal("0.000279"), 1_350
AGENTS = ("researcher", "writer", "critic")
RUNS_PER_TASK = 5

POLICY: dict[str, Any] = {
    "version": 1,
    "timezone": "Europe/Paris",
    "default_max_output_tokens": 1024,
    "budgets": [
        {
            "id": "support-daily",
            "scope": {"team": "support"},
            "limit": "100000",
            "period": "daily",
            "thresholds": [50, 80, 90],
            "action": "pause",
        },
        {"id": "task-cap", "limit": "1000", "period": "task", "action": "deny"},
        {"id": "run-cap", "limit": "100", "period": "run", "action": "pause"},
    ],
    "rate_limits": [
        {"id": "agent-rpm", "scope": {"agent": "*"}, "window": "1m", "max_calls": 10_000_000}
    ],
    "loops": [{"id": "burst", "kind": "model_call_burst", "max_calls": 500, "window": "10s"}],
}


class _QuietTracker(CostTracker):
    """A tracker that drops decisions: the engine's figure without the recording."""

    def record_decision(self, decision: DecisionRecord) -> None:
        """Drop it."""


# -- statistics -------------------------------------------------------------------------------

QUANTILES = (("P50", 0.50), ("P90", 0.90), ("P99", 0.99), ("P99.9", 0.999))


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted samples (P99 of 5,000 is the 4,950th smallest)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(samples: list[float]) -> dict[str, float]:
    """P50/P90/P99/P99.9/max and mean, in milliseconds."""
    ordered = sorted(samples)
    out = {name: quantile(ordered, q) * 1e3 for name, q in QUANTILES}
    out["max"] = ordered[-1] * 1e3
    out["mean"] = statistics.fmean(ordered) * 1e3
    return out


# -- workloads ----------------------------------------------------------------------------------


@dataclass
class _Calls:
    """Guarded calls through one engine: new run every `per_run` calls, new task every 5 runs."""

    engine: PolicyEngine
    per_run: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    n: int = 0
    run_key: str = ""
    first_of_run: list[bool] = field(default_factory=list)

    def step(self) -> float:
        """One guarded call; returns its decision latency (before + after) in seconds."""
        i = self.n
        self.n += 1
        run = i // self.per_run
        if i % self.per_run == 0:
            if self.run_key:
                self.engine.end_run(self.run_key)
            self.run_key = f"{self.tag}-run-{run}"
        tags = {
            "team": "support",
            "agent": AGENTS[run % len(AGENTS)],
            "task": f"{self.tag}-ticket-{run // RUNS_PER_TASK}",
        }
        call_id = f"{self.tag}-{i}"
        clock = time.perf_counter
        start = clock()
        decision = self.engine.check_before_model_call(
            call_id=call_id,
            trace_id=self.run_key,
            run_key=self.run_key,
            tags=tags,
            model=MODEL,
            provider=PROVIDER,
            input_tokens=INPUT_TOKENS,
            max_output_tokens=MAX_OUTPUT_TOKENS,
        )
        settled = self.engine.check_after_model_call(
            call_id, cost=ACTUAL_COST, tokens=ACTUAL_TOKENS
        )
        elapsed = clock() - start
        assert decision.action == "allow" and settled, (decision, settled)
        self.first_of_run.append(i % self.per_run == 0)
        return elapsed


def _store_cycle(store: BudgetStore) -> Callable[[], float]:
    amounts: list[tuple[Unit, Decimal]] = [
        ("usd", Decimal("0.0009")),
        ("usd", Decimal("0.0009")),
        ("usd", Decimal("0.0009")),
        ("calls", Decimal(1)),
    ]
    claims = [
        Claim(f"bench|store|{k}", f"rule{k}", unit, Decimal("1e12"), amount)
        for k, (unit, amount) in enumerate(amounts)
    ]
    actual = {"usd": ACTUAL_COST, "tokens": Decimal(ACTUAL_TOKENS), "calls": Decimal(1)}
    tag = uuid.uuid4().hex[:8]
    counter = iter(range(10**12))

    def cycle() -> float:
        call_id = f"{tag}-{next(counter)}"
        start = time.perf_counter()
        granted = store.reserve(call_id, claims, trace_id="bench").granted
        store.settle(call_id, actual)
        elapsed = time.perf_counter() - start
        assert granted
        return elapsed

    return cycle


def _write_txn(ledger: SQLLedger) -> Callable[[], float]:
    engine = ledger.engine
    p = "?" if engine.dialect.name == "sqlite" else "%s"
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_write (k TEXT PRIMARY KEY, v TEXT)")
    counter = iter(range(10**12))

    def write() -> float:
        start = time.perf_counter()
        fairy = engine.raw_connection()
        try:
            cur = fairy.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute(
                f"INSERT INTO bench_write (k, v) VALUES ({p}, {p}) "
                "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                ("k", str(next(counter))),
            )
            fairy.driver_connection.commit()  # type: ignore[union-attr]
        finally:
            fairy.close()
        return time.perf_counter() - start

    return write


# -- one backend --------------------------------------------------------------------------------


@dataclass
class BackendResult:
    """Samples of every mode on one backend."""

    name: str
    samples: dict[str, list[float]]
    first_of_run: list[bool]
    wal_max_bytes: int | None = None
    decisions: int = 0
    write_errors: int = 0


def _wal_size(ledger: SQLLedger) -> int | None:
    db = ledger.engine.url.database
    if ledger.dialect != "sqlite" or not db:
        return None
    wal = Path(db + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def bench_backend(
    name: str,
    ledger: SQLLedger,
    *,
    iterations: int,
    rounds: int,
    per_run: int,
    modes: tuple[str, ...],
) -> BackendResult:
    """Warm up, then measure every mode in interleaved rounds."""
    policy = Policy.from_mapping(POLICY, source="bench")
    tracker = CostTracker(ledger, tags={"team": "support"})
    quiet = _QuietTracker(ledger, tags={"team": "support"}, background=False)
    recording = PolicyEngine(policy, tracker)
    silent = PolicyEngine(policy, quiet)
    store = ledger.budget_store()
    lazy = ledger.budget_store(durable_commits=False)
    no_sync = PolicyEngine(policy, tracker, budgets=lazy)
    live = _Calls(recording, per_run)
    steps: dict[str, Callable[[], float]] = {
        "engine": live.step,
        "engine, no recording": _Calls(silent, per_run).step,
        "store reserve+settle": _store_cycle(store),
        "write txn": _write_txn(ledger),
    }
    if ledger.dialect == "postgresql":
        steps["engine, sync commit off"] = _Calls(no_sync, per_run).step
    steps = {k: v for k, v in steps.items() if k in modes}
    samples: dict[str, list[float]] = {k: [] for k in steps}
    wal_max = _wal_size(ledger)
    try:
        warmup = max(200, iterations // 10)
        for step in steps.values():
            for _ in range(warmup):
                step()
        tracker.flush()
        live.first_of_run.clear()
        per_round = max(1, iterations // rounds)
        for r in range(rounds):
            order = list(steps.items())
            order = order[r % len(order) :] + order[: r % len(order)]
            for mode, step in order:
                chunk = samples[mode]
                for _ in range(per_round):
                    chunk.append(step())
                # Outside the timed region: the writer's backlog must not spill into the
                # next mode's samples.
                tracker.flush()
                size = _wal_size(ledger)
                if size is not None and wal_max is not None:
                    wal_max = max(wal_max, size)
        tracker.flush()
        with ledger.engine.connect() as conn:
            decisions = conn.exec_driver_sql("SELECT count(*) FROM finops_decisions").scalar_one()
    finally:
        write_errors = tracker.write_errors
        tracker.close()
        recording.close()
        silent.close()
        no_sync.close()
        store.close()
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS bench_write")
    return BackendResult(name, samples, live.first_of_run, wal_max, int(decisions), write_errors)


def report(result: BackendResult, url: str) -> None:
    """Print the figures of one backend."""
    print(f"\n== {result.name}: {url}")
    n = len(next(iter(result.samples.values())))
    print(f"   {n} samples per mode, 4 claims per guarded call")
    head = "".join(f"{q:>8}" for q, _ in QUANTILES)
    print(f"   {'mode (ms)':34}{head}{'max':>8}{'mean':>8}")
    rows: dict[str, dict[str, float]] = {}
    for mode, samples in result.samples.items():
        rows[mode] = summary(samples)
        if mode == "engine" and result.first_of_run:
            pairs = list(zip(samples, result.first_of_run, strict=True))
            rows["  calls that open a run"] = summary([s for s, f in pairs if f])
            rows["  other calls"] = summary([s for s, f in pairs if not f])
    for mode, s in rows.items():
        cells = "".join(f"{s[q]:8.3f}" for q, _ in QUANTILES)
        print(f"   {mode:34}{cells}{s['max']:8.2f}{s['mean']:8.3f}")
    e = rows.get("engine")
    base = rows.get("store reserve+settle")
    w = rows.get("write txn")
    if e and base:
        print(
            f"   engine / store:        P50 {e['P50'] / base['P50']:.2f}x,"
            f" P99 {e['P99'] / base['P99']:.2f}x"
        )
    if e and w:
        print(
            f"   engine / 2 write txns: P50 {e['P50'] / (2 * w['P50']):.2f}x,"
            f" P99 {e['P99'] / (2 * w['P99']):.2f}x"
        )
    if e and "engine, no recording" in rows:
        q = rows["engine, no recording"]
        print(
            f"   recording adds:        P50 {e['P50'] - q['P50']:+.3f} ms,"
            f" P99 {e['P99'] - q['P99']:+.3f} ms"
        )
    if result.wal_max_bytes is not None:
        print(f"   largest WAL file seen: {result.wal_max_bytes / 1024:.0f} KiB")
    print(f"   decisions in the ledger: {result.decisions}, write errors: {result.write_errors}")


def _medians(results: list[BackendResult]) -> dict[str, dict[str, float]]:
    """Per mode, the median over runs of each figure."""
    per_run = [{mode: summary(x) for mode, x in r.samples.items()} for r in results]
    return {
        mode: {q: statistics.median(run[mode][q] for run in per_run) for q in per_run[0][mode]}
        for mode in per_run[0]
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; with `--check`, exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000, help="samples per mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1, help="runs; then medians over runs")
    parser.add_argument("--calls-per-run", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("AGENT_FINOPS_TEST_POSTGRES_URL"))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--engine-only", action="store_true", help="skip the baselines")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    modes: tuple[str, ...] = ("engine", "engine, no recording")
    if not args.engine_only:
        modes += ("store reserve+settle", "write txn", "engine, sync commit off")
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPU(s), {platform.machine()},"
        f" SQLite {sqlite3.sqlite_version}, GIL switch interval"
        f" {sys.getswitchinterval() * 1e3:g} ms"
    )
    kw: dict[str, Any] = {
        "iterations": args.iterations,
        "rounds": args.rounds,
        "per_run": args.calls_per_run,
        "modes": modes,
    }
    results: dict[str, list[BackendResult]] = {}
    for run in range(args.repeat):
        if args.repeat > 1:
            print(f"\n##### run {run + 1} of {args.repeat}")
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
                with SQLLedger.from_url(url) as ledger:
                    result = bench_backend("sqlite", ledger, **kw)
                    report(result, "SQLite file, WAL, synchronous=NORMAL")
                    results.setdefault("sqlite", []).append(result)
        if args.postgres:
            with (
                _postgres_schema(args.postgres) as engine_kwargs,
                SQLLedger.from_url(args.postgres, **engine_kwargs) as ledger,  # type: ignore[arg-type]
            ):
                result = bench_backend("postgresql", ledger, **kw)
                report(result, ledger.engine.url.render_as_string(hide_password=True))
                results.setdefault("postgresql", []).append(result)
    if not args.postgres:
        print("\n(PostgreSQL skipped: pass --postgres URL or set AGENT_FINOPS_TEST_POSTGRES_URL)")

    missed = False
    for name, runs in results.items():
        medians = _medians(runs)
        print(f"\n== {name}: median over {len(runs)} run(s) of {args.iterations} samples (ms)")
        head = "".join(f"{q:>8}" for q, _ in QUANTILES)
        print(f"   {'mode':34}{head}{'max':>8}{'mean':>8}")
        for mode, row in medians.items():
            cells = "".join(f"{row[q]:8.3f}" for q, _ in QUANTILES)
            print(f"   {mode:34}{cells}{row['max']:8.2f}{row['mean']:8.3f}")
        walls = [r.wal_max_bytes for r in runs if r.wal_max_bytes is not None]
        if walls:
            print(f"   largest WAL file: {max(walls) / 1024:.0f} KiB")
        p99 = medians["engine"]["P99"]
        target = TARGETS_MS[name]
        ok = p99 < target
        missed |= not ok
        print(
            f"   target: engine P99 < {target} ms; measured {p99:.3f} ms:"
            f" {'met' if ok else 'MISSED'}"
        )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
