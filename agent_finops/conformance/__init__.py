"""The ledger conformance suite: the checks every `Ledger` and `BudgetStore` backend must pass.

Modelled on LangGraph's checkpoint conformance. Register a factory of fresh ledgers with
`ledger_backend`, declaring the extended capabilities your backend supports, then run the
checks under pytest (one test per check) or on their own::

    import pytest
    from agent_finops.conformance import ledger_backend, pytest_params

    @ledger_backend("my-store", capabilities={"threads"})
    def my_store():
        with MyLedger.open(...) as ledger:   # a fresh, empty, set-up ledger
            yield ledger                     # cleanup after the yield

    @pytest.mark.parametrize("case", pytest_params(my_store))
    def test_conformance(case):
        case.run()

Base capabilities (`records`, `approvals`, `budgets`) are always checked; extended ones
(`threads`, `processes`, `persistent`, `migrations`) only when declared, otherwise their
cases are skipped with the reason. Checks use only the `Ledger` and `BudgetStore` protocols.
See docs/ledger.md.
"""

from agent_finops.conformance._capabilities import (
    ALL_CAPABILITIES,
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
    Capability,
)
from agent_finops.conformance._postgres import postgres_schema
from agent_finops.conformance._registry import (
    T0,
    Check,
    LedgerBackend,
    Subject,
    all_checks,
    ledger_backend,
)
from agent_finops.conformance._run import Case, Report, cases, pytest_params, validate

__all__ = [
    "ALL_CAPABILITIES",
    "BASE_CAPABILITIES",
    "EXTENDED_CAPABILITIES",
    "T0",
    "Capability",
    "Case",
    "Check",
    "LedgerBackend",
    "Report",
    "Subject",
    "all_checks",
    "cases",
    "ledger_backend",
    "postgres_schema",
    "pytest_params",
    "validate",
]
