"""What a ledger backend can do: base capabilities every backend has, extended ones it declares."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_CAPABILITIES", "BASE_CAPABILITIES", "EXTENDED_CAPABILITIES", "Capability"]


class Capability(StrEnum):
    """A group of conformance checks."""

    RECORDS = "records"
    """Runs, spans, cost events and decisions: idempotent writes, reads, ids, money."""
    APPROVALS = "approvals"
    """Approval requests: decided once, expiry, taken up once, async twins."""
    BUDGETS = "budgets"
    """The budget store: reserve, settle, release, expire, purge, overruns."""
    FINANCE = "finance"
    """Aggregates by tags and windows (exact sums), event streams, alerts raised once."""
    THREADS = "threads"
    """Safe under concurrent threads of one process (races on approvals and budgets)."""
    PROCESSES = "processes"
    """Several processes share one ledger (a multi-process budget race). Needs `reopen`."""
    PERSISTENT = "persistent"
    """What was written survives closing and reopening the ledger. Needs `reopen`."""
    MIGRATIONS = "migrations"
    """The ledger reports `schema_version()`; `setup()` on an existing ledger keeps it."""


BASE_CAPABILITIES = frozenset(
    {Capability.RECORDS, Capability.APPROVALS, Capability.BUDGETS, Capability.FINANCE}
)
"""Every backend must pass these."""
EXTENDED_CAPABILITIES = frozenset(
    {Capability.THREADS, Capability.PROCESSES, Capability.PERSISTENT, Capability.MIGRATIONS}
)
"""A backend declares the ones it supports; the others' checks are skipped."""
ALL_CAPABILITIES = BASE_CAPABILITIES | EXTENDED_CAPABILITIES
