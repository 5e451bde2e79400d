"""SQLAlchemy errors as `LedgerError` (storage faults) with an honest `retryable`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
    StatementError,
)

from agent_finops.exceptions import LedgerError

__all__ = ["faults", "retryable", "shown_url"]


def retryable(exc: SQLAlchemyError) -> bool:
    """False when the database refused the data or the statement itself: retrying cannot work.

    True for outages, locks, dropped connections and the like.
    """
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    return not isinstance(exc, DataError | IntegrityError | ProgrammingError | StatementError)


@contextmanager
def faults(what: str) -> Iterator[None]:
    """Raise SQLAlchemy errors inside the block as `LedgerError(f"{what}: ...")`."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise LedgerError(f"{what}: {exc}", retryable=retryable(exc)) from exc


_PASSWORD = re.compile(r"(://[^:/?#@]*:)[^@/?#]*@")


def shown_url(url: str) -> str:
    """A URL as it may be shown in a message: any password replaced by `***`."""
    return _PASSWORD.sub(r"\1***@", url)
