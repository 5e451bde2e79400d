"""Latency of one budget reservation cycle (reserve + settle) on SQLite and PostgreSQL.

Run: `python bench/bench_reservations.py [--iterations N] [--claims K] [--postgres URL]`.
PostgreSQL is measured when `--postgres` or `AGENT_FINOPS_TEST_POSTGRES_URL` gives a URL; it
runs in a throwaway schema that is dropped afterwards. Engines are made by
`SQLLedger.from_url` (WAL SQLite file; pooled PostgreSQL with pre-ping), as in production.

PostgreSQL is measured twice: with durable commits (the default: each commit waits for its
WAL flush) and with `ledger.budget_store(durable_commits=False)` (`synchronous_commit=off`).

Baselines measured in the same run, on the same engine and pool:
- `SELECT 1`: one pooled checkout and one round trip, the floor for any database call;
- `write txn`: one pooled checkout, a one-row upsert and a commit (the durable-write floor:
  on PostgreSQL this includes the WAL flush at commit; a reserve+settle cycle needs two).
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
from decimal import Decimal
from pathlib import Path

from agent_finops.ledger import Claim, SQLLedger


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1e3, p99 * 1e3, statistics.fmean(ordered) * 1e3


def _measure(step: Callable[[int], object], iterations: int, offset: int = 0) -> list[float]:
    samples: list[float] = []
    clock = time.perf_counter
    for i in range(offset, offset + iterations):
        start = clock()
        step(i)
        samples.append(clock() - start)
    return samples


@contextmanager
def _postgres_schema(url: str) -> Iterator[dict[str, object]]:
    import psycopg

    schema = f"finops_bench_{uuid.uuid4().hex[:10]}"
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield {"connect_args": {"options": f"-csearch_path={schema}"}}
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def bench(
    name: str, ledger: SQLLedger, iterations: int, n_claims: int, *, durable: bool = True
) -> None:
    """Print P50/P99 of reserve+settle, its parts and the baselines, for one backend."""
    store = ledger.budget_store(durable_commits=durable)
    engine = ledger.engine
    claims = [
        Claim(f"bench|{name}|{k}", f"rule{k}", "usd", Decimal("1e12"), Decimal("0.0125"))
        for k in range(n_claims)
    ]
    actual = {"usd": Decimal("0.003217"), "tokens": Decimal(1234), "calls": Decimal(1)}
    tag = uuid.uuid4().hex[:8]

    def cycle(i: int) -> None:
        call_id = f"{tag}-{i}"
        result = store.reserve(call_id, claims, trace_id="bench")
        assert result.granted
        store.settle(call_id, actual)

    reserve_only: list[float] = []
    settle_only: list[float] = []

    def split(i: int) -> None:
        call_id = f"{tag}-split-{i}"
        t0 = time.perf_counter()
        store.reserve(call_id, claims, trace_id="bench")
        t1 = time.perf_counter()
        store.settle(call_id, actual)
        t2 = time.perf_counter()
        reserve_only.append(t1 - t0)
        settle_only.append(t2 - t1)

    def select_one(_i: int) -> None:
        fairy = engine.raw_connection()
        try:
            cur = fairy.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute("SELECT 1")
            cur.fetchone()
            fairy.driver_connection.commit()  # type: ignore[union-attr]
        finally:
            fairy.close()

    p = "?" if engine.dialect.name == "sqlite" else "%s"
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_write (k TEXT PRIMARY KEY, v TEXT)")

    def write_txn(i: int) -> None:
        fairy = engine.raw_connection()
        try:
            cur = fairy.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute(
                f"INSERT INTO bench_write (k, v) VALUES ({p}, {p}) "
                "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                ("k", str(i)),
            )
            fairy.driver_connection.commit()  # type: ignore[union-attr]
        finally:
            fairy.close()

    warmup = max(200, iterations // 10)
    for step in (cycle, select_one, write_txn, split):
        _measure(step, warmup, offset=-warmup)
    # Interleave the measurements in rounds so background load hits them all alike.
    rounds = 5
    per_round = max(1, iterations // rounds)
    results: dict[str, list[float]] = {"cycle": [], "select1": [], "write": []}
    reserve_only.clear()
    settle_only.clear()
    for r in range(rounds):
        results["select1"] += _measure(select_one, per_round, r * per_round)
        results["write"] += _measure(write_txn, per_round, r * per_round)
        results["cycle"] += _measure(cycle, per_round, r * per_round)
        _measure(split, per_round, r * per_round)

    c50, c99, cmean = _percentiles(results["cycle"])
    s50, s99, _ = _percentiles(results["select1"])
    w50, w99, _ = _percentiles(results["write"])
    r50, r99, _ = _percentiles(reserve_only)
    t50, t99, _ = _percentiles(settle_only)
    commits = (
        ""
        if engine.dialect.name == "sqlite"
        else (", durable commits" if durable else ", synchronous_commit=off")
    )
    print(f"\n== {name}{commits}: {engine.url.render_as_string(hide_password=True)}")
    print(f"   {len(results['cycle'])} reserve+settle cycles, {n_claims} claim(s) per call")
    print(f"   {'':28} {'P50 ms':>8} {'P99 ms':>8}")
    print(f"   {'reserve + settle':28} {c50:8.3f} {c99:8.3f}   (mean {cmean:.3f})")
    print(f"   {'  reserve alone':28} {r50:8.3f} {r99:8.3f}")
    print(f"   {'  settle alone':28} {t50:8.3f} {t99:8.3f}")
    print(f"   {'baseline SELECT 1':28} {s50:8.3f} {s99:8.3f}")
    print(f"   {'baseline write txn':28} {w50:8.3f} {w99:8.3f}")
    print(
        f"   ratio cycle / SELECT 1: P50 {c50 / s50:.1f}x, P99 {c99 / s99:.1f}x;"
        f" cycle / (2 x write txn): P50 {c50 / (2 * w50):.2f}x, P99 {c99 / (2 * w99):.2f}x"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE bench_write")
    store.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--claims", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("AGENT_FINOPS_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        with SQLLedger.from_url(url) as ledger:
            bench("sqlite", ledger, args.iterations, args.claims)
    if args.postgres:
        with (
            _postgres_schema(args.postgres) as kwargs,
            SQLLedger.from_url(args.postgres, **kwargs) as ledger,  # type: ignore[arg-type]
        ):
            bench("postgresql", ledger, args.iterations, args.claims)
            bench("postgresql", ledger, args.iterations, args.claims, durable=False)
    else:
        print("\n(PostgreSQL skipped: pass --postgres URL or set AGENT_FINOPS_TEST_POSTGRES_URL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
