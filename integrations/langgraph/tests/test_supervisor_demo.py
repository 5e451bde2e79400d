"""The README's main demo runs offline and records what it says it records."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from types import ModuleType

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
        first = demo.main(["--db", url])
        second = demo.main(["--db", url])
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
        assert all(e.tags["tenant"] == "acme-corp" and e.tags["team"] == "growth" for e in trace.events)
    assert "agent-finops --db" in out.getvalue()
