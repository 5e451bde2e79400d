"""DBAPI connections a budget store keeps checked out between calls, and their retry.

The hot path talks to the DBAPI connection directly (no ORM, no statement compilation), and
keeps its connections checked out of the engine's pool between calls (SQLite: one per
process; PostgreSQL: a few, which skips the pool's pre-ping round trip). A connection found
dropped is replaced and the operation retried once, which is safe because every budget
operation is idempotent by call id. After a fork, the parent's connections are left alone
(never used nor closed: that would break the parent) and the child opens its own.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from agent_finops._foreground import foreground
from agent_finops.exceptions import LedgerError

__all__ = ["KeptConnections"]

_T = TypeVar("_T")
_INHERITED: list[Any] = []
"""Connections a forked child inherited: never used nor closed (that would break the parent)."""


class StaleConnection(Exception):
    """Internal control flow: a kept connection was dropped by the server; retry once."""


class _Kept:
    """What is kept between calls; closed by a finalizer, so it never refers back."""

    def __init__(self, release: Callable[[Any], None]) -> None:
        self.idle: list[Any] = []
        self.release = release

    def give_back(self, fairy: Any) -> None:
        """Return a connection to the engine's pool."""
        try:
            self.release(fairy)
        except Exception:  # a broken connection: the pool discards it
            fairy.invalidate()
        fairy.close()

    def close(self) -> None:
        while self.idle:
            self.give_back(self.idle.pop())


class KeptConnections:
    """Up to `max_idle` pooled connections kept checked out, fork-aware, with a retry.

    `prepare(fairy)` readies a connection taken from the pool (autocommit, pragmas) and
    `release(fairy)` undoes it before the connection goes back.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_idle: int,
        prepare: Callable[[Any], None],
        release: Callable[[Any], None],
    ) -> None:
        """Keep connections of `engine`."""
        self.engine = engine
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._max_idle = max_idle
        self._prepare = prepare
        self._release = release
        self.kept = _Kept(release)
        self.pid = os.getpid()
        self._finalizer = weakref.finalize(self, self.kept.close)

    def _after_fork(self) -> None:
        _INHERITED.append(self.kept)
        self._finalizer.detach()
        self.kept = _Kept(self._release)
        self._finalizer = weakref.finalize(self, self.kept.close)
        self.pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A DBAPI connection, kept checked out between calls; invalidated if it broke."""
        if self.pid != os.getpid():  # forked: the parent's connections are not ours
            self._after_fork()
        idle = self.kept.idle
        try:
            fairy, kept = idle.pop(), True
        except IndexError:
            fairy, kept = self.engine.raw_connection(), False
            try:
                self._prepare(fairy)
            except BaseException:
                fairy.close()
                raise
        try:
            yield fairy.driver_connection
        except BaseException as exc:
            if isinstance(exc, self._dbapi_error) and self.engine.dialect.is_disconnect(
                cast(Any, exc), fairy.dbapi_connection, None
            ):
                fairy.invalidate(exc)
                fairy.close()
                if kept:
                    raise StaleConnection from exc
                raise
            self.kept.give_back(fairy)  # the pool rolls it back before reuse
            raise
        if len(idle) < self._max_idle:
            idle.append(fairy)
        else:
            self.kept.give_back(fairy)

    def run(self, what: str, operation: Callable[[], _T]) -> _T:
        """Run an operation, once more on a fresh connection if a kept one had gone stale.

        The writer thread steps aside while it runs, so the answer does not wait for the
        GIL (`agent_finops._foreground`). Driver and SQLAlchemy errors become `LedgerError`
        (retryable: budget operations fail on outages, locks and the like, not on the data,
        which the store validated).
        """
        try:
            with foreground():  # the ledger writer steps aside meanwhile (`_foreground`)
                try:
                    return operation()
                except StaleConnection:
                    return operation()
        except StaleConnection as exc:
            raise LedgerError(f"budget {what} failed: {exc.__cause__}") from exc.__cause__
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise LedgerError(f"budget {what} failed: {exc}") from exc

    def close(self) -> None:
        """Give every kept connection back to the pool (the store may still be used after)."""
        if self.pid == os.getpid():
            self.kept.close()
