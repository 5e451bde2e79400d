"""The README's main demo runs offline and records what it says it records."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

from agent_finops import SQLLedger

DEMO = Path(__file__).resolve().parents[3] / "examples" / "supervisor_demo.py"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("supervisor_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_records_a_priced_attributed_run(tmp_path: Path) -> None:
    demo = load_demo()
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        first = demo.main(["--db", url, "--no-policy"])
        second = demo.main(["--db", url, "--no-policy"])
    assert first != second
    with SQLLedger.from_url(url) as ledger:
        runs = {r.run.trace_id: r for r in ledger.list_runs()}
        assert {first, second} <= set(runs)
        run = runs[first]
        assert (run.model_calls, run.tool_calls, run.unpriced) == (7, 2, 0)
        assert str(run.cost) == "0.0670749"
        trace = ledger.load_trace(first)
        assert trace is not None
        assert {e.price_source for e in trace.events} == {
            "genai-prices",
            "override:acme-gpu-cluster",
            "tool-fee:search-api",
        }
        assert all(
            e.tags["tenant"] == "acme-corp" and e.tags["team"] == "growth" for e in trace.events
        )
    assert "agent-finops --db" in out.getvalue()


def test_demo_enforcement_pauses_caps_and_catches_a_loop(tmp_path: Path) -> None:
    demo = load_demo()
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    args = ["--db", url, "--checkpoints", str(tmp_path / "ckpt.sqlite")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tracked = demo.main(args)
    text = out.getvalue()
    assert "(a) run budget: paused for approval" in text
    assert "(a) resumed after 'approve'" in text
    with SQLLedger.from_url(url) as ledger:
        runs = sorted(ledger.list_runs(), key=lambda r: r.run.started_at)
        assert runs[0].run.trace_id == tracked
        # part 2: paused, resumed, capped, looping
        assert [r.run.status for r in runs[1:]] == ["interrupted", "ok", "stopped", "stopped"]
        paused, resumed, capped, looped = runs[1:]
        # The approved run did everything part 1 did, across its two invocations.
        assert paused.cost + resumed.cost == runs[0].cost
        (approval,) = ledger.list_approvals(status="approved")
        assert approval.rule_id == "brief-budget" and approval.decided_by == "resume:demo-approver"
        capped_actions = [d.action for d in ledger.decisions_for(capped.run.trace_id)]
        assert capped_actions == ["allow", "deny"]
        assert ledger.decisions_for(capped.run.trace_id)[-1].rule_id == "quick-task-cap"
        looped_decisions = ledger.decisions_for(looped.run.trace_id)
        assert (
            looped_decisions[-1].action == "deny" and looped_decisions[-1].rule_id == "same-search"
        )
        assert looped.tool_calls == 2  # the third identical search never ran
        paused_actions = [d.action for d in ledger.decisions_for(paused.run.trace_id)]
        assert paused_actions.count("threshold") == 2 and paused_actions[-2:] == [
            "pause",
            "approved",
        ]


def test_demo_pause_can_be_approved_later_from_the_console(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from agent_finops.cli import main as cli

    demo = load_demo()
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    checkpoints = str(tmp_path / "ckpt.sqlite")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        demo.main(["--db", url, "--checkpoints", checkpoints, "--approve", "later"])
    assert "agent-finops approvals approve" in out.getvalue()
    monkeypatch.setenv("AGENT_FINOPS_DB_URL", url)
    monkeypatch.setenv("AGENT_FINOPS_DEMO_CHECKPOINTS", checkpoints)
    with SQLLedger.from_url(url) as ledger:
        (pending,) = ledger.list_approvals(status="pending")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert (
            cli(
                [
                    "approvals",
                    "approve",
                    pending.approval_id,
                    "--extra",
                    "0.05",
                    "--resume",
                    "--targets",
                    f"{demo.__file__}:targets",
                ]
            )
            == 0
        )
    assert "resumed thread" in printed.getvalue()
    with SQLLedger.from_url(url) as ledger:
        runs = sorted(ledger.list_runs(), key=lambda r: r.run.started_at)
        resumed = runs[-1]
        assert resumed.run.status == "ok" and resumed.run.tags["task"].startswith("weekly-brief-")
        # the paused part plus the resumed part cost what the unguarded run cost
        paused = next(r for r in runs if r.run.status == "interrupted")
        assert paused.cost + resumed.cost == runs[0].cost
