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


def test_every_error_pickles_with_message_and_attributes() -> None:
    import pickle

    from agent_finops import exceptions as ex

    samples = [
        ex.ConfigurationError("bad", source="p.yaml", field="limit", value="x", expected="n"),
        ex.MissingDependencyError("pip install x"),
        ex.UnknownResumeTarget("evil:run", known=["graph"]),
        ex.PriceNotFound("no price", model="m", provider="p"),
        ex.RunNotFound("no run", key="01", candidates=["01a", "01b"]),
        ex.ApprovalNotFound("no approval", key="ap"),
        ex.AlertNotFound("no alert", key="al"),
        ex.LedgerNotFound("no ledger at missing.sqlite", key="missing.sqlite"),
        ex.AlreadyDecided("ap-1", status="approved", decided_by="console:alice"),
        ex.ApproverNotAllowed("ap-1", approver="slack:U1", scope={"team": "a"}),
        ex.MissingTags("missing", missing=["team"], trace_id="t"),
        ex.ApprovalDenied("no", rule_id="r", scope={"team": "a"}, limit=1, observed=2),
    ]
    names = {n for n in ex.__all__ if issubclass(getattr(ex, n), ex.FinOpsError)}
    assert names - {type(e).__name__ for e in samples} <= {
        "FinOpsError",
        "NotFound",
        "LedgerError",
        "HandlerError",
        "PolicyViolation",
        "BudgetExceeded",
        "RateLimitExceeded",
        "LoopDetected",
        "ApprovalRequired",
    }
    for error in samples:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert str(back) == str(error)
        assert vars(back) == vars(error)
    assert "01a, 01b" in str(samples[4])
    assert isinstance(samples[4], LookupError) and isinstance(samples[0], ValueError)


def test_subpackages_export_only_public_names() -> None:
    import agent_finops.conformance
    import agent_finops.ledger
    import agent_finops.ledger.sql

    for module in (agent_finops.ledger, agent_finops.ledger.sql, agent_finops.conformance):
        assert len(module.__all__) == len(set(module.__all__)), module.__name__
        for name in module.__all__:
            value = getattr(module, name)
            assert not name.startswith("_"), (module.__name__, name)
            assert type(value).__name__ != "module", (module.__name__, name)
    for name in ("Ledger", "BudgetStore", "InMemoryLedger", "SQLLedger"):
        assert name in agent_finops.__all__ and name in agent_finops.ledger.__all__


def test_no_test_or_bench_imports_a_private_module_of_the_ledger() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    private = re.compile(
        r"^\s*(from|import)\s+agent_finops\.(ledger|conformance)[\w.]*\._\w+", re.MULTILINE
    )
    files = [*root.glob("tests/**/*.py"), *root.glob("bench/**/*.py"),
             *root.glob("integrations/*/tests/**/*.py")]  # fmt: skip
    offenders = [str(p.relative_to(root)) for p in files if private.search(p.read_text())]
    assert offenders == []


def test_no_test_bench_or_example_reaches_into_a_private_module() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    private = re.compile(r"^\s*(from|import)\s+agent_finops\w*(\.\w+)*\._\w+", re.M)
    offenders = []
    for folder in ("tests", "bench", "examples", "integrations"):
        for path in (root / folder).rglob("*.py"):
            if "/src/" in path.as_posix() or ".venv" in path.parts:
                continue  # a package's own modules may import its private ones
            for match in private.finditer(path.read_text()):
                offenders.append(f"{path.relative_to(root)}: {match.group(0).strip()}")
    assert offenders == []


def test_an_error_about_an_unprintable_value_still_has_a_message() -> None:
    from agent_finops import ConfigurationError

    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    for value, shown in ((10**5000, "<int>"), (nested, "<list>")):
        error = ConfigurationError("bad", field="f", value=value, expected="small")
        assert shown in str(error)
