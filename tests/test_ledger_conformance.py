"""The ledger conformance suite (`agent_finops.conformance`) on every backend we ship.

In-memory (the reference), a SQLite file, in-memory SQLite (a single shared connection: no
thread races) and PostgreSQL (when AGENT_FINOPS_TEST_POSTGRES_URL is set; skipped with the
reason otherwise). This file is also the example of running the suite on your own backend.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from agent_finops.conformance import (
    ALL_CAPABILITIES,
    Capability,
    Case,
    ledger_backend,
    postgres_schema,
    pytest_params,
    validate,
)
from agent_finops.ledger import InMemoryLedger, Ledger, SQLLedger

POSTGRES_ENV = "AGENT_FINOPS_TEST_POSTGRES_URL"
EXTENDED_SQL = {
    Capability.THREADS,
    Capability.PROCESSES,
    Capability.PERSISTENT,
    Capability.MIGRATIONS,
}


def _address(ledger: Ledger) -> str:
    assert isinstance(ledger, SQLLedger)
    return ledger.engine.url.render_as_string(hide_password=False)


@ledger_backend("in-memory", capabilities={Capability.THREADS})
def in_memory() -> Iterator[Ledger]:
    """The reference backend."""
    with InMemoryLedger() as ledger:
        yield ledger


@ledger_backend(
    "sqlite-file", capabilities=EXTENDED_SQL, reopen=SQLLedger.from_url, address=_address
)
def sqlite_file() -> Iterator[Ledger]:
    """A WAL SQLite file in a temporary directory."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        SQLLedger.from_url(f"sqlite:///{tmp}/l.sqlite") as ledger,
    ):
        yield ledger


@ledger_backend("sqlite-memory", capabilities={Capability.MIGRATIONS})
def sqlite_memory() -> Iterator[Ledger]:
    """A private in-memory SQLite database (one shared connection)."""
    with SQLLedger.from_url("sqlite://") as ledger:
        yield ledger


@ledger_backend("postgres", capabilities=EXTENDED_SQL, reopen=SQLLedger.from_url, address=_address)
def postgres() -> Iterator[Ledger]:
    """A fresh schema of the PostgreSQL database at AGENT_FINOPS_TEST_POSTGRES_URL."""
    try:
        schema = postgres_schema(os.environ[POSTGRES_ENV])
        url = schema.__enter__()
    except Exception as exc:
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc}")
    try:
        with SQLLedger.from_url(url) as ledger:
            yield ledger
    finally:
        schema.__exit__(None, None, None)


@ledger_backend(
    "sqlite-file+leases",
    capabilities=EXTENDED_SQL,
    reopen=SQLLedger.from_url,
    address=_address,
    store_options={"leases": True},
)
def sqlite_file_leased() -> Iterator[Ledger]:
    """A SQLite file, every budget store a `LeasedBudgetStore`."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        SQLLedger.from_url(f"sqlite:///{tmp}/l.sqlite") as ledger,
    ):
        yield ledger


@ledger_backend(
    "in-memory+leases", capabilities={Capability.THREADS}, store_options={"leases": True}
)
def in_memory_leased() -> Iterator[Ledger]:
    """The reference backend, every budget store a `LeasedBudgetStore`."""
    with InMemoryLedger() as ledger:
        yield ledger


@ledger_backend(
    "postgres+leases",
    capabilities=EXTENDED_SQL,
    reopen=SQLLedger.from_url,
    address=_address,
    store_options={"leases": True},
)
def postgres_leased() -> Iterator[Ledger]:
    """PostgreSQL, every budget store a `LeasedBudgetStore`."""
    yield from postgres.factory.__wrapped__()  # type: ignore[attr-defined]


SKIP_POSTGRES = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV),
    reason=f"PostgreSQL tests need {POSTGRES_ENV} "
    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)",
)
SLOW = {Capability.PROCESSES: [pytest.mark.slow]}


@pytest.mark.parametrize(
    "case",
    pytest_params(
        in_memory,
        sqlite_file,
        sqlite_memory,
        in_memory_leased,
        sqlite_file_leased,
        capability_marks=SLOW,
    )
    + pytest_params(
        postgres,
        postgres_leased,
        marks=[pytest.mark.postgres, SKIP_POSTGRES],
        capability_marks=SLOW,
    ),
)
def test_conformance(case: Case) -> None:
    case.run()


def test_the_reference_declares_what_it_can_do() -> None:
    assert in_memory.capabilities == ALL_CAPABILITIES - {
        Capability.PROCESSES,
        Capability.PERSISTENT,
        Capability.MIGRATIONS,
    }


def test_validate_runs_the_suite_without_pytest() -> None:
    report = validate(in_memory, capabilities={"records"})
    assert report.passed and report.passed_all_base() and report.passed_all(), report.summary()
    assert "0 failed" in report.summary()


def test_a_broken_backend_fails_the_suite() -> None:
    class Forgetful(InMemoryLedger):
        def write(self, **records: object) -> None:  # drops every write
            pass

    @ledger_backend("forgetful")
    def forgetful() -> Iterator[Ledger]:
        yield Forgetful()

    report = validate(forgetful, capabilities={"records"})
    assert not report.passed_all_base()
    assert "roundtrip_keeps_every_decimal_digit" in report.failed
    assert "FAILED forgetful:" in report.summary()


def test_capabilities_that_need_reopen_are_refused_without_it() -> None:
    with pytest.raises(ValueError, match="reopen"):
        ledger_backend("x", capabilities={"processes"})
    with pytest.raises(ValueError):
        ledger_backend("x", capabilities={"teleportation"})


def test_the_backends_fit_the_protocols() -> None:
    from agent_finops.ledger import BudgetStore

    for ledger in (InMemoryLedger(), SQLLedger.from_url("sqlite://")):
        with ledger, ledger.budget_store() as store:
            assert isinstance(ledger, Ledger)
            assert isinstance(store, BudgetStore)
