"""Fixtures for the LangGraph integration tests: a fake OpenAI server and a temp-file ledger."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_finops import SQLLedger

# --import-mode=importlib puts no test directory on sys.path; the shared fakes live in the
# repository's top-level `tests/` package, so make this checkout's root importable first.
_REPO_ROOT = str(Path(__file__).resolve().parents[3])
if _REPO_ROOT not in sys.path[:1]:
    sys.path.insert(0, _REPO_ROOT)

from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI server with an empty script (tests `enqueue` replies)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLLedger]:
    """A fresh SQLite ledger file under the test's temp directory."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        yield ledger
