"""FinOps reporting at scale: rollups, exports and their memory on a 90-day ledger.

    python bench/bench_finops.py                       # 100k and 1M events, SQLite
    AGENT_FINOPS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/bench_finops.py --postgres            # ... and PostgreSQL (1M events)

Ledgers come from `bench/make_ledger.py` (seeded: the same events every time), kept in
`--dir` (default /tmp/agent-finops-bench) so a second run skips generation. Measured, each
the best of `--repeat` runs:

- a month's rollup (the last of the 90 days: ~1/3 of the events) by team, by team x agent,
  and by day (30 windows);
- a day's export and a month's export to /dev/null as CSV, in a fresh process each, with
  that process's peak RSS: memory must stay flat as the ledger grows (100k vs 1M events)
  and as the export grows (a day vs a month).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

HERE = Path(__file__).parent
MONTH = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def ensure_sqlite(directory: Path, events: int) -> str:
    path = directory / f"ledger-{events}.sqlite"
    url = f"sqlite:///{path}"
    if not path.exists():
        print(f"generating {events:,} events in {path} ...", flush=True)
        subprocess.run(
            [sys.executable, str(HERE / "make_ledger.py"), "--events", str(events), "--db", url],
            check=True,
        )
    return url


def ensure_postgres(base: str, events: int) -> str:
    schema = f"bench_finops_{events}"
    engine = create_engine(base)
    with engine.begin() as conn:
        exists = conn.execute(
            text(
                "select 1 from information_schema.tables where table_schema = :s "
                "and table_name = 'finops_cost_events'"
            ),
            {"s": schema},
        ).first()
        if not exists:
            conn.execute(text(f'create schema if not exists "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    if not exists:
        print(f"generating {events:,} events in PostgreSQL schema {schema} ...", flush=True)
        subprocess.run(
            [sys.executable, str(HERE / "make_ledger.py"), "--events", str(events), "--db", url],
            check=True,
        )
    return url


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def rollups(url: str, repeat: int) -> dict[str, float]:
    from agent_finops import SQLLedger
    from agent_finops.rollups import rollup

    start, end = MONTH
    with SQLLedger.from_url(url, create=False) as ledger:
        return {
            "month by team": best(
                lambda: rollup(ledger, start=start, end=end, by=["team"]), repeat
            ),
            "month by team x agent": best(
                lambda: rollup(ledger, start=start, end=end, by=["team", "agent"]), repeat
            ),
            "month by day (30 windows)": best(
                lambda: rollup(ledger, start=start, end=end, period="day"), repeat
            ),
        }


EXPORT_CHILD = """
import resource, sys, time
from datetime import datetime, UTC
from agent_finops import SQLLedger
from agent_finops.exports import write_export
url, start, end = sys.argv[1], datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
began = time.perf_counter()
with SQLLedger.from_url(url, create=False) as ledger, open("/dev/null", "w") as out:
    rows = write_export(ledger, out, start=start, end=end)
took = time.perf_counter() - began
print(rows, took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def export(url: str, start: datetime, end: datetime) -> tuple[int, float, float]:
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_CHILD, url, start.isoformat(), end.isoformat()],
        check=True,
        capture_output=True,
        text=True,
    )
    rows, took, rss_kib = done.stdout.split()
    return int(rows), float(took), int(rss_kib) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/agent-finops-bench"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--only", choices=("rollups", "exports"), default=None)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    targets = [(f"SQLite {n:,}", ensure_sqlite(args.dir, n)) for n in args.sizes]
    if args.postgres:
        base = os.environ["AGENT_FINOPS_TEST_POSTGRES_URL"]
        targets.append((f"PostgreSQL {max(args.sizes):,}", ensure_postgres(base, max(args.sizes))))
    print(f"\nload average before measuring: {os.getloadavg()[0]:.2f} (2 cores)")
    if args.only != "exports":
        print("\n| ledger | rollup | seconds |\n| --- | --- | ---: |")
    for name, url in targets if args.only != "exports" else ():
        for what, seconds in rollups(url, args.repeat).items():
            print(f"| {name} | {what} | {seconds:.3f} |", flush=True)
    if args.only == "rollups":
        return 0
    print("\n| ledger | export (CSV to /dev/null) | rows | seconds | rows/s | peak RSS MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    day = (datetime(2026, 11, 18, tzinfo=UTC), datetime(2026, 11, 19, tzinfo=UTC))
    for name, url in targets:
        for label, (start, end) in (("a day", day), ("a month", MONTH)):
            rows, took, rss = export(url, start, end)
            print(
                f"| {name} | {label} | {rows:,} | {took:.2f} | {rows / took:,.0f} | {rss:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
