"""Soak: many worker processes, random SIGKILL/SIGTERM, one ledger; then nothing is wrong.

Run: `python bench/soak.py [--db URL] [--workers 8] [--threads 4] [--seconds 180] [--durable]`.

Bounded (time- and count-limited) and loopback only. N worker processes
(bench/soak_worker.py) x T threads make guarded fake-model calls through the public
`RunGuard` against ONE ledger (PostgreSQL by default, in a throwaway schema dropped
afterwards; a SQLite file URL is accepted) and four limits: a daily budget per team sized
to run out partway through (so many refusals happen), a per-run cost cap, a daily tokens
budget and a per-agent rate limit, all `deny`. Meanwhile workers are killed at random
(SIGKILL mostly, some SIGTERM) and restarted. Once every worker has exited (each closes its
guard at the deadline) and the reaper ran past the worker lease, the checks
(bench/soak_checks.py) say, exiting 1 on any failure:

1. no budget exceeded: spent <= limit on every counter;
2. the ledger's cost events sum, per rule and scope, to the counters' spent exactly
   (calls killed between recording and settling are counted and reported apart);
3. no reservation open, every counter's `reserved` 0, no budget lease left;
4. no duplicate event, at most one model event per call;
5. every poison record (a cost no ledger stores) is in the dead-letter file or the ledger;
and every call a worker saw return is in the ledger: strictly with `--durable`; otherwise
at most the calls of 50 ms per killed worker (reported).

The last line is `SOAK-JSON {...}` (the figures and verdicts) for tests and scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from agent_finops import SQLLedger
from agent_finops.policy import Policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak_checks import Incarnation, Outcome, run_checks
from soak_worker import INPUT_TOKENS, MAX_OUTPUT_TOKENS

HERE = Path(__file__).resolve().parent

DEFAULT_DB = os.environ.get(
    "AGENT_FINOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ESTIMATE_USD = Decimal("0.0006")
"""What one call reserves: 2,000 input tokens at $0.15/M plus 500 output at $0.60/M."""
TERM_SHARE = 0.25
"""Share of the kills sent as SIGTERM (the rest SIGKILL)."""


def policy_for(team_usd: Decimal, seconds: float) -> dict[str, Any]:
    """The soak's limits; `team_usd` per team and day (sized to run out partway)."""
    return {
        "version": 1,
        "timezone": "UTC",
        "budgets": [
            {"id": "team-daily", "scope": {"team": "*"}, "limit": str(team_usd), "period": "daily"},
            {"id": "run-cap", "limit": "0.003", "period": "run"},
            {
                "id": "critic-tokens",
                "scope": {"agent": "critic"},
                "unit": "tokens",
                "limit": str(int(team_usd / ESTIMATE_USD * 2_500 * 2)),
                "period": "daily",
            },
        ],
        "rate_limits": [
            {"id": "agent-rate", "scope": {"agent": "*"}, "window": "1s", "max_calls": 40}
        ],
    }


@contextmanager
def ledger_url(db: str) -> Iterator[str]:
    """The URL the workers use: a fresh PostgreSQL schema (dropped after), or the SQLite file."""
    if not db.startswith("postgresql"):
        yield db
        return
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    engine = create_engine(db)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in db else "?"
    try:
        yield f"{db}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@dataclass
class Worker:
    """One worker slot and its current process."""

    slot: int
    proc: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    current: Incarnation | None = None


class Soak:
    """Starts, kills and restarts the workers until the deadline."""

    def __init__(
        self, args: argparse.Namespace, url: str, policy: dict[str, Any], work: Path
    ) -> None:
        """Prepare the run (nothing starts yet)."""
        self.args, self.url, self.work = args, url, work
        self.policy_json = json.dumps(policy)
        self.dead_letter = work / "dead-letter.jsonl"
        self.deadline = time.time() + args.seconds
        self.rng = random.Random(args.seed)
        self.incarnations: list[tuple[Incarnation, Path]] = []
        self.kills = {"SIGKILL": 0, "SIGTERM": 0}

    def start(self, w: Worker) -> None:
        """(Re)start a worker slot."""
        w.incarnation += 1
        name = f"w{w.slot}k{w.incarnation}"
        journal = self.work / f"journal-{name}.txt"
        cmd = [
            sys.executable, str(HERE / "soak_worker.py"), self.url, str(journal),
            "--policy", self.policy_json, "--name", name, "--threads", str(self.args.threads),
            "--deadline", str(self.deadline), "--max-calls", str(self.args.max_calls),
            "--lease", str(self.args.lease), "--dead-letter", str(self.dead_letter),
            "--seed", str(self.args.seed),
        ]  # fmt: skip
        if self.args.durable:
            cmd.append("--durable")
        if self.args.per_call:
            cmd.append("--per-call")
        w.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=self.work)
        w.current = Incarnation(name)
        self.incarnations.append((w.current, journal))

    def run(self) -> None:
        """Kill at random (mean `--kill-every` s) and restart, until the deadline."""
        workers = [Worker(n) for n in range(self.args.workers)]
        for w in workers:
            self.start(w)
        next_kill = time.time() + self.rng.expovariate(1 / self.args.kill_every)
        while time.time() < self.deadline - 1.0:  # no restart in the last second
            time.sleep(0.05)
            for w in workers:
                assert w.proc is not None and w.current is not None
                code = w.proc.poll()
                if code is not None:  # died by itself: recorded, restarted
                    w.current.ended = f"exit {code}"
                    self.start(w)
            if time.time() >= next_kill:
                self.kill(self.rng.choice(workers))
                next_kill = time.time() + self.rng.expovariate(1 / self.args.kill_every)
        for w in workers:
            assert w.proc is not None and w.current is not None
            try:
                code = w.proc.wait(timeout=self.deadline - time.time() + 60)
                w.current.ended = f"exit {code}"
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
                w.current.ended = "exit hung (killed after the deadline)"

    def kill(self, w: Worker) -> None:
        """SIGKILL (or sometimes SIGTERM) one worker, wait for it, start its next incarnation."""
        assert w.proc is not None and w.current is not None
        sig = signal.SIGTERM if self.rng.random() < TERM_SHARE else signal.SIGKILL
        w.proc.send_signal(sig)
        try:
            w.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        w.current.ended = sig.name
        self.kills[sig.name] += 1
        self.start(w)

    def journals(self) -> list[Incarnation]:
        """Every incarnation with its journal read."""
        for inc, path in self.incarnations:
            if path.exists():
                inc.read(path)
        return [inc for inc, _ in self.incarnations]


def report(out: Outcome, figures: dict[str, Any]) -> None:
    """Print the figures and each check."""
    for name, value in {**figures, **out.figures}.items():
        print(f"  {name}: {value}")
    for line in out.passed:
        print(f"  PASS {line}")
    for line in out.failed:
        print(f"  FAIL {line}")
    for line in out.notes:
        print(f"  NOTE {line}")


def main(argv: list[str] | None = None) -> int:
    """Run the soak, check, print; 1 if a check failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL URL or sqlite:///file")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--max-calls", type=int, default=100_000, help="per thread and process")
    parser.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between kills")
    parser.add_argument("--lease", type=float, default=2.0, help="worker lease, seconds")
    parser.add_argument("--durable", action="store_true", help="CostTracker(durable=True)")
    parser.add_argument(
        "--per-call",
        action="store_true",
        help="one database reservation per call (budget_leases=False): the event and the "
        "settlement are then two transactions, and a kill between them shows",
    )
    parser.add_argument(
        "--team-usd", type=Decimal, default=None,
        help="daily budget per team (default: sized to run out partway, from --seconds)",
    )  # fmt: skip
    parser.add_argument(
        "--strict-settlement", action="store_true", help="fail if a recorded call was never charged"
    )
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    team_usd = args.team_usd or (Decimal("0.004") * Decimal(args.seconds)).quantize(
        Decimal("0.0001")
    )
    policy = policy_for(team_usd, args.seconds)
    per_call = {
        "usd": ESTIMATE_USD,
        "tokens": Decimal(INPUT_TOKENS + MAX_OUTPUT_TOKENS),
        "calls": Decimal(1),
    }
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, ledger_url(args.db) as url:
        with SQLLedger.from_url(url) as ledger:
            ledger.setup()  # once, before the workers race to it
            ledger.budget_store().close()
        soak = Soak(args, url, policy, Path(tmp))
        soak.run()
        ran = time.time() - started
        out = run_checks(
            url, Policy.from_mapping(policy, source="soak"), soak.journals(), soak.dead_letter,
            durable=args.durable, lease=args.lease, per_call_bound=per_call,
            started=started, strict_settlement=args.strict_settlement,
        )  # fmt: skip
    shown = "sqlite file" if not args.db.startswith("postgresql") else "postgresql (own schema)"
    figures = {
        "ledger": shown,
        "mode": "durable" if args.durable else "background writer",
        "workers x threads": f"{args.workers} x {args.threads}",
        "seconds": round(ran, 1),
        "team budget (USD/day)": str(team_usd),
        "processes started": len(soak.incarnations),
        "kills": soak.kills,
    }
    print(f"soak: {'FAILED' if out.failed else 'passed'}")
    report(out, figures)
    verdict = {
        "figures": {**figures, **out.figures},
        "passed": out.passed,
        "failed": out.failed,
        "notes": out.notes,
    }
    print("SOAK-JSON " + json.dumps(verdict, default=str))
    return 1 if out.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
