"""One mode of bench_peers alone, a few rounds: wall clock and process CPU per model call.

    python bench/bench_mode.py MODE [ROUNDS] [--postgres URL]

MODE: `none` (no callback), `track` (ours, tracking only, SQLite), `policy` (tracking +
policy, SQLite), `policy-pg` (tracking + policy, PostgreSQL; URL from `--postgres` or
AGENT_FINOPS_TEST_POSTGRES_URL); a `-proc` suffix (`track-proc`...) writes the ledger from
a child process (`CostTracker(writer="process")`). One warm-up round, then ROUNDS (default 2) of bench_peers'
graph (2,000 model calls), each checked as bench_peers checks it. For comparing two trees
of the code quickly, alternating runs (`PYTHONPATH=<tree> python <tree>/bench/bench_mode.py`):
bench_peers interleaves every mode and is the figure to quote.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import mode_policy_sqlite, policy_postgres_mode, with_writer_process
from bench_tracking import TOTAL_CALLS, build_graph, mode_finops, mode_none


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Run one mode and print µs per call, wall and CPU, per round."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "mode",
        choices=[
            "none",
            "track",
            "policy",
            "policy-pg",
            "track-proc",
            "policy-proc",
            "policy-pg-proc",
        ],
    )
    parser.add_argument("rounds", nargs="?", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("AGENT_FINOPS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    name = args.mode.removesuffix("-proc")
    if name == "policy-pg" and not args.postgres:
        sys.exit("policy-pg needs --postgres URL")
    modes = {"none": mode_none, "track": mode_finops, "policy": mode_policy_sqlite}
    mode = policy_postgres_mode(args.postgres) if name == "policy-pg" else modes[name]
    if args.mode.endswith("-proc"):
        mode = with_writer_process(mode)
    graph = build_graph()
    with tempfile.TemporaryDirectory() as tmp:
        mode(graph, Path(tmp))  # warm-up
        for _ in range(args.rounds):
            start = _cpu()
            wall = mode(graph, Path(tmp))
            cpu = _cpu() - start
            print(
                f"{args.mode}: {wall / TOTAL_CALLS * 1e6:,.0f} µs per call wall,"
                f" {cpu / TOTAL_CALLS * 1e6:,.0f} µs CPU",
                flush=True,
            )


if __name__ == "__main__":
    main()
