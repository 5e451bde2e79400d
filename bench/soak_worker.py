"""One worker process of the soak (bench/soak.py): guarded fake-model calls until a deadline.

    python bench/soak_worker.py URL JOURNAL --worker W --threads T --deadline EPOCH [...]

Public API only, as an application would: `SQLLedger.from_url`, `CostTracker`,
`Policy.from_mapping`, `PolicyEngine` (on a budget store with a short worker lease) and the
framework-neutral `RunGuard`. Every thread runs runs of a few calls each; a refusal
(`PolicyViolation`) is a normal outcome: counted, the run ends, the next one starts.

The journal is this process's account of what it saw, one line per outcome, appended and
written through (`O_APPEND`, one `write` per line) right after the outcome, so it survives
SIGKILL: `ok <call id>` once `after_model_call` returned, `refused <rule> <call id> <team>`,
`failed <call id>` (a model error: the reservation is released), `poison <event id>` (a
record the ledger refuses, tracked without the guard), `error <text>` (anything else: the
soak fails).

The fake usage never costs more than its reservation: input tokens at most the
`input_tokens` bound given before the call, output at most `max_output_tokens`, priced
by the bundled catalog (no network).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal

from agent_finops import Cost, CostTracker, PolicyViolation, SQLLedger, TokenUsage
from agent_finops.guard import RunGuard
from agent_finops.policy import Policy, PolicyEngine

MODEL, PROVIDER = "gpt-4o-mini", "openai"
INPUT_TOKENS, MAX_OUTPUT_TOKENS = 2_000, 500
"""Every call's bounds, as an integration would pass them (estimate: $0.0006 a call)."""
TEAMS = (("alpha", 5), ("beta", 3), ("gamma", 2))
"""Teams and their weights: they exhaust their daily budget at different times."""
AGENTS = ("researcher", "writer", "critic")
CALLS_PER_RUN = (4, 14)
FAILED_SHARE = 0.03
"""Calls whose model request fails (no usage): their reservation is released."""
POISON_EVERY = 10
"""Thread 0 tracks one record the ledger refuses every this many runs."""
UNSTORABLE = Decimal("1e25")
"""A cost no ledger stores (money is below 1e20): the record goes to the dead-letter file."""


class Journal:
    """Outcomes appended to a file, each line in one `write` (survives SIGKILL)."""

    def __init__(self, path: str) -> None:
        """Append to `path` (created if missing)."""
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def add(self, *parts: str) -> None:
        """One line: the wall time, then the parts."""
        os.write(self._fd, (f"{time.time():.3f} " + " ".join(parts) + "\n").encode())


def run_thread(
    guard: RunGuard, journal: Journal, name: str, deadline: float, max_calls: int, seed: str
) -> None:
    """Runs of guarded calls until the deadline or `max_calls`."""
    rng = random.Random(seed)
    calls = runs = 0
    while time.time() < deadline and calls < max_calls:
        runs += 1
        run_id = f"{name}r{runs}"
        team = rng.choices([t for t, _ in TEAMS], [w for _, w in TEAMS])[0]
        tags = {"team": team, "agent": rng.choice(AGENTS)}
        if name.endswith("t0") and runs % POISON_EVERY == 0:
            poison(guard.tracker, journal, f"{run_id}p")
        root = guard.start_run(run_id, name="soak", tags=tags)
        try:
            for n in range(rng.randint(*CALLS_PER_RUN)):
                if time.time() >= deadline or calls >= max_calls:
                    break
                calls += 1
                if not one_call(guard, journal, rng, f"{run_id}c{n}", root.span_id):
                    time.sleep(rng.uniform(0.002, 0.01))  # refused: back off a little
                    break
        finally:
            guard.close_step(root.span_id)


def one_call(guard: RunGuard, journal: Journal, rng: random.Random, call_id: str, run: str) -> bool:
    """One guarded call; False when the policy refused it."""
    try:
        guard.before_model_call(
            call_id,
            parent_id=run,
            name="llm",
            model=MODEL,
            provider=PROVIDER,
            input_tokens=INPUT_TOKENS,
            max_output_tokens=MAX_OUTPUT_TOKENS,
        )
    except PolicyViolation as refused:
        team = refused.scope.get("team", "-") if refused.scope else "-"
        journal.add("refused", refused.rule_id or type(refused).__name__, call_id, team)
        return False
    time.sleep(rng.uniform(0.0, 0.004))  # the model "thinks"
    if rng.random() < FAILED_SHARE:
        guard.model_call_failed(call_id, RuntimeError("fake model error"))
        journal.add("failed", call_id)
        return True
    usage = TokenUsage(
        uncached_input_tokens=rng.randint(INPUT_TOKENS // 4, INPUT_TOKENS),
        output_tokens=rng.randint(1, MAX_OUTPUT_TOKENS),
    )
    guard.after_model_call(call_id, usage=usage)
    journal.add("ok", call_id)
    return True


def poison(tracker: CostTracker, journal: Journal, run_id: str) -> None:
    """Track (without the guard: no budget is charged) one call the ledger refuses."""
    tracker.start_span(
        run_id, parent_span_id=None, name="poison", kind="run", tags={"team": "poison"}
    )
    call_id = f"{run_id}c"
    tracker.start_span(call_id, parent_span_id=run_id, name="llm", kind="model")
    event = tracker.record_model_call(
        call_id,
        model=MODEL,
        provider=PROVIDER,
        usage=TokenUsage(uncached_input_tokens=1, output_tokens=1),
        cost=Cost(amount=UNSTORABLE, source="custom", version="soak"),
    )
    tracker.end_span(call_id)
    tracker.end_span(run_id)
    journal.add("poison", event.event_id)


def main() -> int:
    """Run the threads until the deadline, then close everything cleanly."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("journal")
    parser.add_argument("--policy", required=True, help="the policy as JSON")
    parser.add_argument("--name", required=True, help="this incarnation, e.g. w3k2")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--deadline", type=float, required=True, help="epoch seconds")
    parser.add_argument("--max-calls", type=int, default=10**9, help="per thread")
    parser.add_argument("--lease", type=float, default=2.0, help="worker lease, seconds")
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--per-call", action="store_true", help="no budget leases")
    parser.add_argument("--dead-letter", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    journal = Journal(args.journal)
    policy = Policy.from_mapping(json.loads(args.policy), source="soak")
    ledger = SQLLedger.from_url(args.url)
    tracker = CostTracker(ledger, durable=args.durable, dead_letter=args.dead_letter)
    # The engine's default store (budget leases, charges written with their events through
    # the tracker), with a short worker lease so a killed worker's leases come back quickly.
    store = ledger.budget_store(
        worker_lease=timedelta(seconds=args.lease),
        leases=not args.per_call,
        charges_to=None if args.per_call else tracker,
    )
    guard = RunGuard(tracker, policy=PolicyEngine(policy, tracker, budgets=store))
    print("ready", flush=True)

    def thread(n: int) -> None:
        try:
            run_thread(
                guard,
                journal,
                f"{args.name}t{n}",
                args.deadline,
                args.max_calls,
                f"{args.seed}-{args.name}-{n}",
            )
        except Exception as exc:  # the checker fails the soak on any
            journal.add("error", repr(exc).replace("\n", " "))
            print(f"{args.name} thread {n}: {exc!r}", file=sys.stderr, flush=True)

    pool = [threading.Thread(target=thread, args=(n,)) for n in range(args.threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    guard.close()  # flush the tracker, end the worker lease, return the connections
    ledger.close()
    journal.add("closed", args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
