"""The SQL backend of the ledger: SQLite (default, a WAL file) and PostgreSQL.

One job per module: `_tables` (schema v3, on the package's own `metadata`), `_migrations`
(versions and `setup()`), `_ledger` (`SQLLedger`), `_budget_store` (`SQLBudgetStore`),
`_dialect` (what a database must provide), `_sqlite` and `_postgres` (the only places that
know a database's specifics, each with its own SQL), `_connections` (kept DBAPI connections),
`_checkpointer` (SQLite WAL checkpoints off the hot path), `_faults` (errors).
"""

from agent_finops.ledger.sql._budget_store import DEFAULT_MAX_IDLE_CONNECTIONS, SQLBudgetStore
from agent_finops.ledger.sql._ledger import DEFAULT_URL, LedgerSource, SQLLedger
from agent_finops.ledger.sql._migrations import SCHEMA_VERSION
from agent_finops.ledger.sql._tables import metadata

__all__ = [
    "DEFAULT_MAX_IDLE_CONNECTIONS",
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    "SQLBudgetStore",
    "SQLLedger",
    "LedgerSource",
    "metadata",
]
