"""CrewAI overhead: the same crew without agent-finops, with the listener, and with a policy.

A one-agent, one-task crew whose scripted model (`ScriptedLLM`, no network) makes
`CALLS_PER_KICKOFF` model calls: it uses a free tool `CALLS_PER_KICKOFF - 1` times, then
answers. It is kicked off `KICKOFFS` times per round in three modes, interleaved and in a
different order each round:

(a) bare: no listener, no hooks;
(a') no-op: do-nothing async handlers on the same events the listener subscribes to: what
    CrewAI's event bus itself costs to deliver them (a floor no listener can go under);
(b) tracking: `FinOpsListener(tracker)` pricing every model and tool call into a SQLite
    file ledger (background writer), the report read after each kickoff being final;
(c) enforcing: the same listener with a policy (a daily budget, a per-task cap and a
    repeated-tool-call loop rule): every model and tool call is checked and reserved
    before it is sent and settled after it.

The median round is reported as milliseconds per kickoff and, subtracting (a), the
overhead per model call (its tool call included), in wall time and in process CPU time (all
threads: the machine is shared, and CPU time is what load on other cores does not inflate). After each round of (b) and (c) the
ledger is checked: every model call recorded, priced at what genai-prices gives.

    HOME=$(mktemp -d) CREWAI_DISABLE_TELEMETRY=true CREWAI_TRACING_ENABLED=false
    integrations/crewai/.venv/bin/python bench/bench_crewai.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import crewai
from crewai import Agent, Crew, Task
from crewai.tools import BaseTool

from agent_finops import CostTracker, PriceBook, SQLLedger, normalize_usage
from agent_finops.policy import Policy
from agent_finops_crewai import FinOpsListener
from agent_finops_crewai.testing import Reply, ScriptedLLM, crewai_usage

KICKOFFS = 10
CALLS_PER_KICKOFF = 10
MODEL = "gpt-4o-mini"
USAGE = crewai_usage(1_200, 150, cached=512)
POLICY = {
    "version": 1,
    "budgets": [
        {"id": "daily", "limit": "1000", "period": "daily"},
        {"id": "task-cap", "limit": "100", "period": "task"},
    ],
    "loops": [{"id": "same-tool", "kind": "repeated_tool_call", "max_repeats": 50}],
}


class Lookup(BaseTool):
    """A free tool (no fee), so the crew's work is model calls."""

    name: str = "lookup"
    description: str = "Look a key up."

    def _run(self, key: str) -> str:
        return f"value of {key}"


def script() -> list[Reply]:
    steps = [
        Reply(f'Thought: next\nAction: lookup\nAction Input: {{"key": "k{i}"}}', USAGE)
        for i in range(CALLS_PER_KICKOFF - 1)
    ]
    return [*steps, Reply("Thought: done\nFinal Answer: all looked up", USAGE)]


def crew() -> Crew:
    agent = Agent(
        role="Worker",
        goal="Look keys up",
        backstory="Diligent.",
        llm=ScriptedLLM(model=MODEL, script=script(), max_tokens=200),
        tools=[Lookup()],
        max_iter=CALLS_PER_KICKOFF + 5,
    )
    task = Task(
        name="lookups", description="Look up ten keys.", expected_output="values", agent=agent
    )
    return Crew(name="bench-crew", agents=[agent], tasks=[task])


Timing = tuple[float, float]
"""(wall seconds, process CPU seconds: every thread, the bus loop and ledger writer included)."""


def kickoffs() -> Timing:
    crews = [crew() for _ in range(KICKOFFS)]  # built outside the timed region
    start, cpu = time.perf_counter(), time.process_time()
    for c in crews:
        c.kickoff()
    return time.perf_counter() - start, time.process_time() - cpu


def with_listener(tmp: Path, policy: Policy | None) -> Callable[[], Timing]:
    def run() -> Timing:
        ledger = SQLLedger.from_url(f"sqlite:///{tmp / f'{time.monotonic_ns()}.sqlite'}")
        tracker = CostTracker(ledger, prices=PriceBook())
        listener = FinOpsListener(tracker, policy=policy)
        try:
            elapsed = kickoffs()
            check(tracker)
            return elapsed
        finally:
            listener.detach()
            tracker.close()
            ledger.close()

    return run


def with_noop_handlers() -> Timing:
    from crewai.events import crewai_event_bus

    async def noop(source: object, event: object) -> None:
        return None

    classes = FinOpsListener.subscribed_events()
    for cls in classes:
        crewai_event_bus.on(cls)(noop)
    try:
        elapsed = kickoffs()
        crewai_event_bus.flush()
        return elapsed
    finally:
        for cls in classes:
            crewai_event_bus.off(cls, noop)


def check(tracker: CostTracker) -> None:
    runs = tracker.ledger.list_runs(limit=KICKOFFS + 1)
    assert len(runs) == KICKOFFS, len(runs)
    price = PriceBook().price_model_call(MODEL, normalize_usage(dict(USAGE)), provider="openai")
    assert price.amount is not None
    for summary in runs:
        assert summary.model_calls == CALLS_PER_KICKOFF, summary.model_calls
        assert summary.run.status == "ok"
        assert summary.cost == price.amount * CALLS_PER_KICKOFF, summary.cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    modes: dict[str, Callable[[], Timing]] = {
        "bare": kickoffs,
        "no-op": with_noop_handlers,
        "tracking": with_listener(tmp, None),
        "enforcing": with_listener(tmp, Policy.from_mapping(POLICY)),
    }
    kickoffs()  # warm up crewai's lazy imports and the bus
    times: dict[str, list[Timing]] = {name: [] for name in modes}
    names = list(modes)
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            times[name].append(modes[name]())
    calls = KICKOFFS * CALLS_PER_KICKOFF
    bare_wall = statistics.median(t[0] for t in times["bare"])
    bare_cpu = statistics.median(t[1] for t in times["bare"])
    print(
        f"crewai {crewai.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}; {args.rounds} rounds x {KICKOFFS} kickoffs x "
        f"{CALLS_PER_KICKOFF} model calls (+{CALLS_PER_KICKOFF - 1} tool calls each)"
    )
    print(
        f"{'mode':<10} {'wall ms/kickoff':>15} {'ratio':>6} {'wall us/call':>13} "
        f"{'cpu ms/kickoff':>15} {'ratio':>6} {'cpu us/call':>12}"
    )
    for name in names:
        wall = statistics.median(t[0] for t in times[name])
        cpu = statistics.median(t[1] for t in times[name])
        print(
            f"{name:<10} {wall / KICKOFFS * 1e3:>15.2f} {wall / bare_wall:>6.2f} "
            f"{(wall - bare_wall) / calls * 1e6:>13.0f} {cpu / KICKOFFS * 1e3:>15.2f} "
            f"{cpu / bare_cpu:>6.2f} {(cpu - bare_cpu) / calls * 1e6:>12.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
