"""`examples/crewai_team.py` runs offline and shows what the README says it shows."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "crewai_team.py"


def test_example_prints_the_report_and_the_stop() -> None:
    spec = importlib.util.spec_from_file_location("crewai_team_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert module.main() == 0
    text = out.getvalue()
    assert "market-team  [ok]" in text
    assert "delegate_work_to_coworker [tool]" in text and "search [tool]" in text
    assert "By task" in text
    assert "stopped: BudgetExceeded" in text
    assert "kept: ['GPU prices fell 8% this week.']" in text
