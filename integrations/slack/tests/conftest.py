"""Fixtures for the Slack integration tests: the Web API emulator, ledgers, requests."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent_finops import SQLLedger
from agent_finops.ledger import ApprovalRecord
from agent_finops_slack import SlackSettings
from agent_finops_slack.testing import SlackEmulator

# --import-mode=importlib puts no test directory on sys.path: make this checkout's root
# importable for the shared PostgreSQL helpers in the top-level `tests/` package.
_REPO_ROOT = str(Path(__file__).resolve().parents[3])
_HERE = str(Path(__file__).resolve().parent)
for _path in (_HERE, _REPO_ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from slack_helpers import CHANNEL, SEARCH_CHANNEL  # noqa: E402

from tests.conftest import drop_postgres_schema, postgres_url_or_skip  # noqa: E402


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    """A running Slack Web API emulator with two channels and one user group."""
    with SlackEmulator(channels={CHANNEL, SEARCH_CHANNEL}, groups={"S0LEADS": ["U0LEAD"]}) as emu:
        yield emu


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLLedger]:
    """A ledger on a SQLite file, and on PostgreSQL when it is configured."""
    url = (
        f"sqlite:///{tmp_path}/ledger.sqlite"
        if request.param == "sqlite"
        else postgres_url_or_skip()
    )
    with SQLLedger.from_url(url) as led:
        yield led
    if request.param == "postgres":
        drop_postgres_schema(url)


@pytest.fixture
def settings() -> SlackSettings:
    """Routes team=search to its own channel, everything else to the default."""
    return SlackSettings.model_validate(
        {
            "default_channel": CHANNEL,
            "routes": [{"scope": {"team": "search"}, "channel": SEARCH_CHANNEL}],
            "raise_options": ["5"],
            "max_retry_wait": 2,
        }
    )


@pytest.fixture
def make_request() -> Callable[..., ApprovalRecord]:
    """Build a pending approval request (not yet filed)."""

    def make(**overrides: Any) -> ApprovalRecord:
        values: dict[str, Any] = {
            "approval_id": uuid.uuid4().hex,
            "trace_id": "trace-1",
            "thread_id": "thread-1",
            "rule_id": "run-cap",
            "scope": {},
            "unit": "usd",
            "spent": Decimal("0.0003"),
            "limit": Decimal("0.0003"),
            "estimate": Decimal("0.0002"),
            "policy_version": "v1-abc",
            "created_at": datetime.now(UTC),
            "message": "run-cap would be exceeded",
            "tags": {"team": "qa", "agent": "researcher", "task": "ticket-7"},
            "resume_target": "app",
        }
        values.update(overrides)
        return ApprovalRecord(**values)

    return make
