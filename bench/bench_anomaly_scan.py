"""How long the anomaly scan of a large ledger takes (every detector, every scope).

    python bench/make_ledger.py --events 1000000 --db sqlite:////tmp/finops-1m.sqlite
    python bench/bench_anomaly_scan.py --db sqlite:////tmp/finops-1m.sqlite

Scans as of the ledger's last day (bench/make_ledger.py ends on 2026-12-01): the last hour
(what a cron job every hour does) and the last 24 hours, by team and by team x agent, with
the monthly budgets of a policy forecast. Prints the time of each detector and the alerts.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from agent_finops import SQLLedger
from agent_finops.anomalies import AnomalyScanner
from agent_finops.policy import Policy

NOW = datetime(2026, 11, 30, 18, 5, tzinfo=UTC)
POLICY = Policy.from_mapping(
    {
        "budgets": [
            {"id": "team-monthly", "limit": "2000", "period": "monthly", "scope": {"team": "*"},
             "thresholds": [80, 90], "action": "warn"},
            {"id": "all-monthly", "limit": "20000", "period": "monthly", "action": "warn"},
        ]
    }
)  # fmt: skip
SCOPES = [["team"], ["team", "agent"]]


def timed(label: str, scanner: AnomalyScanner, since: datetime) -> None:
    began = time.perf_counter()
    alerts = scanner.scan(since=since, now=NOW)
    took = time.perf_counter() - began
    kinds: dict[str, int] = {}
    for alert in alerts:
        kinds[alert.kind] = kinds.get(alert.kind, 0) + 1
    print(f"{label:<44} {took:7.2f} s  {len(alerts):3d} alerts {kinds}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a ledger written by bench/make_ledger.py")
    args = parser.parse_args()
    with SQLLedger.from_url(args.db, create=False) as ledger:
        off = {"spike": None, "cost_per_task": None, "call_rate": None, "forecast": None}
        hour = NOW - timedelta(hours=1)
        for name in ("spike", "cost_per_task", "call_rate", "forecast"):
            only = {**off, name: getattr(AnomalyScanner(ledger), name)}
            scanner = AnomalyScanner(ledger, scopes=SCOPES, policy=POLICY, **only)  # type: ignore[arg-type]
            timed(f"{name}, last hour, team + team x agent", scanner, hour)
        every = AnomalyScanner(ledger, scopes=SCOPES, policy=POLICY)
        timed("all detectors, last hour", every, hour)
        timed("all detectors, last 24 hours", every, NOW - timedelta(hours=24))
    return 0


if __name__ == "__main__":
    sys.exit(main())
