"""Fixtures for the CrewAI integration tests: a temp ledger, listeners that detach, crews.

Run through `scripts/test-crewai.sh`, which sets `HOME` to a temp dir and turns CrewAI's
telemetry and tracing off (importing crewai writes under `~` and phones home otherwise).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

for _name, _value in {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)
if not os.environ.get("AGENT_FINOPS_CREWAI_TEST_HOME"):
    # Never let crewai write into a developer's real home directory.
    os.environ["HOME"] = os.environ["AGENT_FINOPS_CREWAI_TEST_HOME"] = tempfile.mkdtemp()

# --import-mode=importlib puts no test directory on sys.path; the shared fakes live in the
# repository's top-level `tests/` package, and the crew builders next to this file.
_REPO_ROOT = str(Path(__file__).resolve().parents[3])
_HERE = str(Path(__file__).resolve().parent)
for _path in (_HERE, _REPO_ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from crews import PRICES  # noqa: E402

from agent_finops import CostTracker, SQLLedger  # noqa: E402
from agent_finops_crewai import FinOpsListener  # noqa: E402


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLLedger]:
    """A fresh SQLite ledger file under the test's temp directory."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as led:
        yield led


@pytest.fixture
def tracker(ledger: SQLLedger) -> Iterator[CostTracker]:
    """A tracker with the search tool's fee, tagged like a real team's."""
    tracker = CostTracker(ledger, prices=PRICES, tags={"team": "research"})
    yield tracker
    tracker.close()


@pytest.fixture
def make_listener() -> Iterator[Callable[..., FinOpsListener]]:
    """Build listeners on the process-wide bus; each is detached after the test."""
    made: list[FinOpsListener] = []

    def make(tracker: Any, **kwargs: Any) -> FinOpsListener:
        listener = FinOpsListener(tracker, **kwargs)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.detach()
