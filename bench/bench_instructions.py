"""Instructions per model call (valgrind callgrind), a figure the machine's load cannot move.

Wall-clock benchmarks on a shared 2-core machine move by 2x while other work runs;
instruction counts do not. For each mode this runs the same graph (one node calling a
scripted model, looping 20 times per invocation) for N and 2N model calls under callgrind,
and reports (instructions(2N) - instructions(N)) / N: the cost of one more model call,
start-up excluded.

    python bench/bench_instructions.py [--calls 100] [--modes none,track,policy]
    python bench/bench_instructions.py --drive MODE N   # what callgrind runs

Modes: `none` (no callback), `track` (FinOpsCallbackHandler into a SQLite file ledger),
`policy` (the same with a daily budget and a per-run cap), `guard` (bench_decisions' and
bench_peers' policy: four claims per call, thresholds, a rate limit and a loop rule). Needs
`valgrind` on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TypedDict

POLICY = {
    "budgets": [
        {"id": "daily", "limit": "1000", "period": "daily"},
        {"id": "cap", "limit": "100", "period": "run"},
    ]
}


def drive(mode: str, calls: int) -> None:
    """Run `calls` model calls in `mode` (the process callgrind measures)."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.graph import END, START, StateGraph

    from agent_finops import CostTracker, SQLLedger
    from agent_finops.policy import Policy
    from agent_finops_langgraph import FinOpsCallbackHandler
    from agent_finops_langgraph.testing import ScriptedChatModel, usage

    class State(TypedDict, total=False):
        messages: list[Any]
        k: int

    llm = ScriptedChatModel(
        script=[AIMessage("x", usage_metadata=usage(1200, 150, cache_read=512))]
    )

    def agent(state: State) -> State:
        reply = llm.invoke([HumanMessage("hi " * 1700)], max_tokens=200)
        return {"messages": [reply], "k": state.get("k", 0) + 1}

    g = StateGraph(State)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: "agent" if s["k"] < 20 else END, ["agent", END])
    graph = g.compile()
    callbacks: list[Any] = []
    tracker = None
    if mode != "none":
        folder = tempfile.mkdtemp()
        tracker = CostTracker(
            SQLLedger.from_url(f"sqlite:///{folder}/l.sqlite"), tags={"team": "support"}
        )
        policy = None
        if mode == "policy":
            policy = Policy.from_mapping(POLICY)
        elif mode == "guard":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_decisions import POLICY as GUARD

            policy = Policy.from_mapping(GUARD)
        callbacks = [FinOpsCallbackHandler(tracker, policy=policy)]
    for _ in range(calls // 20):
        graph.invoke({"messages": [], "k": 0}, config={"callbacks": callbacks})
    if tracker is not None:
        tracker.close()


def instructions(mode: str, calls: int) -> int:
    """Total instructions callgrind counts for one `drive` process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--drive",
                mode,
                str(calls),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def main() -> None:
    """Print instructions per model call for each mode."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="N (default 100)")
    parser.add_argument("--modes", default="none,track,policy")
    parser.add_argument("--drive", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive[0], int(args.drive[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    base = None
    for mode in args.modes.split(","):
        per_call = (
            instructions(mode, 2 * args.calls) - instructions(mode, args.calls)
        ) // args.calls
        extra = "" if base is None else f"  (+{per_call - base:,} over no callback)"
        print(f"{mode:<7} {per_call:>12,} instructions per model call{extra}", flush=True)
        if mode == "none":
            base = per_call


if __name__ == "__main__":
    main()
