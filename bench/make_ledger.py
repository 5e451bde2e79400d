"""Write a synthetic ledger of cost events over 90 days (seeded, so every run writes the same).

    python bench/make_ledger.py --events 1000000 --db sqlite:////tmp/finops-1m.sqlite
    python bench/make_ledger.py --events 1000000 --db postgresql+psycopg://postgres@127.0.0.1:5432/test

8 teams in 4 cost centers, 24 agents, 6 models with exact prices, 3 tenants, task types and
tasks; runs of 2-18 calls; a weekday/hour seasonal load (busy weekday mornings, quiet
nights and weekends), ~1% unpriced calls, a few tool and compute events. Written through
the public `Ledger.write` in batches. Prints the time taken and the file size.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agent_finops import SQLLedger
from agent_finops.ledger import CostEvent, Ledger, RunRecord

END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 90
TEAMS = [f"team-{c}" for c in "abcdefgh"]
COST_CENTERS = {t: f"cc-{100 + i // 2}" for i, t in enumerate(TEAMS)}
AGENTS = {t: [f"{t}-{name}" for name in ("planner", "writer", "critic")] for t in TEAMS}
TENANTS = ["acme", "globex", "initech"]
MODELS = [  # (name, provider, $ per input token, $ per output token)
    ("gpt-4o-mini", "openai", Decimal("0.00000015"), Decimal("0.0000006")),
    ("gpt-4o", "openai", Decimal("0.0000025"), Decimal("0.00001")),
    ("claude-sonnet-4", "anthropic", Decimal("0.000003"), Decimal("0.000015")),
    ("claude-haiku-3.5", "anthropic", Decimal("0.0000008"), Decimal("0.000004")),
    ("o3-mini", "openai", Decimal("0.0000011"), Decimal("0.0000044")),
    ("llama-3-70b", "self-hosted", Decimal("0.00000059"), Decimal("0.00000079")),
]
TASK_TYPES = ["triage", "summarise", "research", "draft"]


def load(hour_start: datetime) -> float:
    """Relative traffic of an hour: weekday working hours peak, nights and weekends low."""
    weekday, hour = hour_start.weekday(), hour_start.hour
    daily = (
        0.25 + math.exp(-(((hour - 10) / 3.5) ** 2)) + 0.6 * math.exp(-(((hour - 15) / 2.5) ** 2))
    )
    return daily * (1.0 if weekday < 5 else 0.35) * (1.4 if weekday == 0 else 1.0)


def generate(ledger: Ledger, events: int, seed: int, batch: int = 5000) -> int:
    """Write about `events` cost events; returns how many were written."""
    rng = random.Random(seed)
    start = END - timedelta(days=DAYS)
    hours = [start + timedelta(hours=h) for h in range(DAYS * 24)]
    weights = [load(h) for h in hours]
    scale = events / sum(weights)
    written = 0
    run_no = 0
    runs: list[RunRecord] = []
    pending: list[CostEvent] = []
    for hour, weight in zip(hours, weights, strict=True):
        quota = int(weight * scale + rng.random())
        while quota > 0:
            calls = min(quota, rng.randint(2, 18))
            quota -= calls
            run_no += 1
            team = rng.choice(TEAMS)
            tags = {
                "team": team,
                "cost_center": COST_CENTERS[team],
                "project": f"{team}-proj-{rng.randint(1, 3)}",
                "tenant": rng.choice(TENANTS),
                "environment": "prod" if rng.random() < 0.8 else "staging",
                "task": f"task-{run_no}",
                "task_type": rng.choice(TASK_TYPES),
            }
            began = hour + timedelta(seconds=rng.randint(0, 3000))
            trace = f"run-{run_no:08d}"
            at = began
            for i in range(calls):
                at += timedelta(milliseconds=rng.randint(200, 4000))
                pending.append(_event(rng, trace, i, at, tags, AGENTS[team]))
            runs.append(
                RunRecord(
                    trace_id=trace,
                    name="graph",
                    started_at=began,
                    ended_at=at + timedelta(milliseconds=50),
                    status="ok",
                    tags=dict(tags),
                )
            )
            if len(pending) >= batch:
                ledger.write(runs=runs, events=pending)
                written += len(pending)
                runs, pending = [], []
    if pending or runs:
        ledger.write(runs=runs, events=pending)
        written += len(pending)
    return written


def _event(
    rng: random.Random,
    trace: str,
    index: int,
    at: datetime,
    tags: dict[str, str],
    agents: list[str],
) -> CostEvent:
    roll = rng.random()
    agent = rng.choice(agents)
    common = {
        "event_id": f"{trace}-{index}",
        "trace_id": trace,
        "span_id": f"{trace}-{index}",
        "created_at": at,
        "node_path": agent,
        "tags": {**tags, "agent": agent},
        "price_source": "bench",
        "price_version": "bench-1",
    }
    if roll < 0.04:  # a tool with a per-call fee
        return CostEvent(
            kind="tool", name="web_search", provider=None, cost=Decimal("0.005"), units=1, **common
        )  # type: ignore[arg-type]
    if roll < 0.05:  # a sandbox's compute seconds
        seconds = rng.randint(5, 300)
        return CostEvent(
            kind="compute",
            name="sandbox",
            provider=None,
            cost=Decimal("0.0001") * seconds,
            units=seconds,
            **common,
        )  # type: ignore[arg-type]
    name, provider, p_in, p_out = MODELS[rng.randrange(len(MODELS))]
    uncached = rng.randint(200, 6000)
    cached = rng.randint(0, 4000) if rng.random() < 0.4 else 0
    output = rng.randint(20, 1500)
    unpriced = rng.random() < 0.01
    cost = None if unpriced else uncached * p_in + cached * p_in / 10 + output * p_out
    return CostEvent(
        kind="model",
        name=name,
        provider=provider,
        cost=cost,
        uncached_input_tokens=uncached,
        cache_read_tokens=cached,
        output_tokens=output,
        usage_reported=not unpriced,
        **common,  # type: ignore[arg-type]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", required=True)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    began = time.perf_counter()
    with SQLLedger.from_url(args.db) as ledger:
        written = generate(ledger, args.events, args.seed)
    took = time.perf_counter() - began
    print(f"wrote {written:,} events in {took:.1f} s ({written / took:,.0f} events/s)")
    if args.db.startswith("sqlite:///"):
        path = args.db.removeprefix("sqlite:///")
        print(f"file {path}: {os.path.getsize(path) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
