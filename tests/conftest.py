"""Shared fixtures: ledgers on every backend (SQLite file, in-memory SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from agent_finops import SQLLedger

POSTGRES_ENV = "AGENT_FINOPS_TEST_POSTGRES_URL"


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


@pytest.fixture(
    params=["sqlite-file", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def ledger(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[SQLLedger]:
    """The same ledger API on every backend the conformance suite covers."""
    if request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path}/ledger.sqlite"
    elif request.param == "sqlite-memory":
        url = "sqlite://"
    else:
        url = postgres_url_or_skip()
    with SQLLedger.from_url(url) as led:
        yield led


@pytest.fixture
def sqlite_ledger(tmp_path: os.PathLike[str]) -> Iterator[SQLLedger]:
    """A SQLite file ledger."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/ledger.sqlite") as led:
        yield led
