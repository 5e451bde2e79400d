"""Shared fixtures: SQL ledgers (SQLite file, PostgreSQL) for the tests of the ledger's users.

The ledger itself is tested by the conformance suite (tests/test_ledger_conformance.py) and
the SQL specifics (tests/test_sql_ledger.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from agent_finops import InMemoryLedger, SQLLedger
from agent_finops.ledger import CostEvent, Ledger

POSTGRES_ENV = "AGENT_FINOPS_TEST_POSTGRES_URL"


def model_event(n: int) -> CostEvent:
    """Model call `n` of a run of twenty (trace `t-{n // 20}`) at one fixed moment."""
    return CostEvent(
        event_id=f"e-{n}",
        trace_id=f"t-{n // 20}",
        span_id=f"s-{n}",
        kind="model",
        name="gpt-4o-mini",
        provider="openai",
        created_at=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
        node_path="agent",
        tags={"team": "support"},
        cost=Decimal("0.000279"),
        price_source="test",
        price_version="1",
    )


def postgres_url_or_skip() -> str:
    """A fresh PostgreSQL schema's URL for this test, or skip saying why."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    try:
        engine = create_engine(base)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def drop_postgres_schema(url: str) -> None:
    """Drop the per-test schema `postgres_url_or_skip` made (its name ends the URL).

    Best effort: a connection a test left open may hold a lock, and cleanup must never hang.
    """
    schema = url.rsplit("search_path%3D", 1)[1]
    engine = create_engine(os.environ[POSTGRES_ENV])
    try:
        with engine.begin() as conn:
            conn.execute(text("set local lock_timeout = '2s'"))
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    except Exception:
        pass  # left for the next run's cleanup; it never affects a test's outcome
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_ledger(tmp_path: os.PathLike[str]) -> Iterator[SQLLedger]:
    """A SQLite file ledger."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/ledger.sqlite") as led:
        yield led


@pytest.fixture(params=["sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_ledger(
    request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
) -> Iterator[SQLLedger]:
    """A ledger several threads and processes can share: a SQLite file, or PostgreSQL."""
    if request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path}/ledger.sqlite"
    else:
        url = postgres_url_or_skip()
    with SQLLedger.from_url(url) as led:
        yield led
    if request.param == "postgres":
        drop_postgres_schema(url)


@pytest.fixture(params=["in-memory", "sqlite-file"])
def memory_or_file_ledger(
    request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
) -> Iterator[Ledger]:
    """An in-memory ledger, then a SQLite file ledger (the process-local backends)."""
    if request.param == "in-memory":
        with InMemoryLedger() as memory:
            yield memory
    else:
        with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as sql:
            yield sql
