"""The front door: `__all__` lists exactly the public names, and core imports no framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import agent_finops


def test_all_matches_public_names() -> None:
    public = {n for n in dir(agent_finops) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agent_finops, n)).__name__ == "module"}
    assert set(agent_finops.__all__) - {"__version__"} == public - modules
    assert len(agent_finops.__all__) == len(set(agent_finops.__all__))


BLOCK_FRAMEWORKS = textwrap.dedent(
    """
    import sys, importlib.abc
    BLOCKED = ("langchain", "langgraph", "langchain_core", "crewai", "slack_sdk", "openai", "anthropic")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by test)", name=name)
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_FRAMEWORKS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_core_works_without_any_framework() -> None:
    result = _run(
        """
        import agent_finops
        from agent_finops import CostTracker, SQLLedger, TokenUsage
        t = CostTracker(SQLLedger.from_url("sqlite://"), background=False)
        t.start_span("r", parent_span_id=None, name="run", kind="chain")
        t.record_model_call("r", model="gpt-4o-mini", provider="openai", usage=TokenUsage(output_tokens=10))
        t.end_span("r")
        print(t.report("r").total_cost)
        assert not any(m.split(".")[0] in BLOCKED for m in sys.modules), sorted(sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.000006"


def test_integration_without_framework_names_the_install_command() -> None:
    result = _run(
        """
        try:
            import agent_finops_langgraph
        except ImportError as exc:
            from agent_finops import MissingDependencyError
            assert isinstance(exc, MissingDependencyError), type(exc)
            print(exc)
        else:
            raise SystemExit("imported without langgraph")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install agent-finops-langgraph" in result.stdout


def test_errors_pickle_with_their_facts() -> None:
    import pickle

    from agent_finops import ApprovalRequired, BudgetExceeded, LedgerError

    err = pickle.loads(pickle.dumps(LedgerError("refused", retryable=False)))
    assert err.retryable is False and str(err) == "refused"
    budget = pickle.loads(
        pickle.dumps(BudgetExceeded("over", rule_id="cap", limit=1, observed=2, trace_id="t"))
    )
    assert (budget.rule_id, budget.limit, budget.observed, budget.trace_id) == ("cap", 1, 2, "t")
    pause = pickle.loads(pickle.dumps(ApprovalRequired("ask", approval_id="a1", thread_id="th")))
    assert (pause.approval_id, pause.thread_id) == ("a1", "th")
