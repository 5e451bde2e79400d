"""Backends under test (`ledger_backend`) and the checks of the suite (`spec`)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from agent_finops.conformance._capabilities import BASE_CAPABILITIES, Capability
from agent_finops.ledger import BudgetStore, Ledger

__all__ = [
    "SPEC_MODULES",
    "T0",
    "Check",
    "LedgerBackend",
    "Subject",
    "all_checks",
    "ledger_backend",
    "spec",
]

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
"""The fixed "now" of the checks (the clock of `Subject.store()`)."""

SPEC_MODULES = (
    "agent_finops.conformance._spec_records",
    "agent_finops.conformance._spec_approvals",
    "agent_finops.conformance._spec_budgets",
    "agent_finops.conformance._spec_finance",
    "agent_finops.conformance._spec_threads",
    "agent_finops.conformance._spec_processes",
    "agent_finops.conformance._spec_persistence",
)

Factory = Callable[[], AbstractContextManager[Ledger]]
Reopen = Callable[[str], AbstractContextManager[Ledger]]


@dataclass(frozen=True)
class LedgerBackend:
    """A backend under test: how to open a fresh, empty ledger, and what it can do.

    Made by the `ledger_backend` decorator.
    """

    name: str
    factory: Factory
    """Called once per check: a context manager yielding a fresh, set-up, empty ledger
    (and cleaning up after it)."""
    capabilities: frozenset[Capability]
    """Base capabilities plus the extended ones declared."""
    reopen: Reopen | None = None
    """Opens the same ledger again from its address (in this process or another); must be
    picklable (a module-level function or class method) for `processes`."""
    address: Callable[[Ledger], str] | None = None
    """The string `reopen` takes to reach the ledger the factory yielded."""
    store_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of every `budget_store()` the checks open (`{"leases": True}`
    checks the `LeasedBudgetStore` on the backend); picklable, for `processes`."""

    def open(self) -> AbstractContextManager[Ledger]:
        """A fresh ledger (a context manager)."""
        return self.factory()

    def __str__(self) -> str:
        """The backend's name."""
        return self.name


def ledger_backend(
    name: str,
    *,
    capabilities: Iterable[Capability | str] = (),
    reopen: Reopen | None = None,
    address: Callable[[Ledger], str] | None = None,
    store_options: Mapping[str, Any] | None = None,
) -> Callable[[Callable[[], Any]], LedgerBackend]:
    """Register a backend factory for the conformance suite.

    Decorate a generator function that yields a fresh, empty, set-up ledger and cleans up
    after the `yield` (or a function returning such a context manager). `capabilities`
    names the extended capabilities the backend supports (`threads`, `processes`,
    `persistent`, `migrations`); the base ones are always checked. `processes` and
    `persistent` also need `reopen` and `address`. `store_options` are passed to every
    `budget_store()` a check opens (in this process and in the spawned ones)::

        @ledger_backend("sqlite-file", capabilities={"threads", "persistent"},
                        reopen=SQLLedger.from_url, address=lambda led: led.engine.url...)
        def sqlite_file():
            with tempfile.TemporaryDirectory() as tmp:
                with SQLLedger.from_url(f"sqlite:///{tmp}/l.sqlite") as ledger:
                    yield ledger
    """
    declared = frozenset(Capability(c) for c in capabilities)  # ValueError if unknown
    needs_reopen = declared & {Capability.PROCESSES, Capability.PERSISTENT}
    if needs_reopen and (reopen is None or address is None):
        raise ValueError(f"{name}: {sorted(needs_reopen)} need reopen= and address=")

    def decorator(fn: Callable[[], Any]) -> LedgerBackend:
        factory = cast(Factory, contextmanager(fn) if inspect.isgeneratorfunction(fn) else fn)
        return LedgerBackend(
            name, factory, BASE_CAPABILITIES | declared, reopen, address, dict(store_options or {})
        )

    return decorator


@dataclass
class Subject:
    """What a check runs against: the backend, a fresh ledger, and budget stores on it."""

    backend: LedgerBackend
    ledger: Ledger
    _stack: ExitStack = field(default_factory=ExitStack)

    def store(self, *, clock: Callable[[], datetime] | None = None) -> BudgetStore:
        """A budget store on the ledger (clock fixed at `T0` unless given); closed after."""
        return self._stack.enter_context(
            self.ledger.budget_store(clock=clock or (lambda: T0), **self.backend.store_options)
        )

    @contextmanager
    def reopened(self) -> Iterator[Ledger]:
        """The same ledger opened again through the backend's `reopen`."""
        assert self.backend.reopen is not None and self.backend.address is not None
        with self.backend.reopen(self.backend.address(self.ledger)) as again:
            yield again

    def close(self) -> None:
        """Close the stores the check opened."""
        self._stack.close()


@dataclass(frozen=True)
class Check:
    """One conformance check: a function of a `Subject`, in one capability."""

    name: str
    capability: Capability
    fn: Callable[[Subject], None]
    doc: str = ""

    def run(self, backend: LedgerBackend) -> None:
        """Run on a fresh ledger of `backend`."""
        with backend.open() as ledger:
            subject = Subject(backend, ledger)
            try:
                self.fn(subject)
            finally:
                subject.close()


_CHECKS: dict[str, Check] = {}


CheckFn = Callable[[Subject], None]


def spec(capability: Capability) -> Callable[[CheckFn], CheckFn]:
    """Register a function of a `Subject` as a check of `capability` (named after it)."""

    def register(fn: CheckFn) -> CheckFn:
        name = fn.__name__
        if name in _CHECKS:
            raise ValueError(f"two conformance checks are named {name!r}")
        _CHECKS[name] = Check(name, capability, fn, (fn.__doc__ or "").strip())
        return fn

    return register


def all_checks() -> list[Check]:
    """Every check of the suite, in definition order (importing the spec modules once)."""
    for module in SPEC_MODULES:
        importlib.import_module(module)
    return list(_CHECKS.values())
