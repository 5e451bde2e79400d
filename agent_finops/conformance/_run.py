"""Running the suite: as pytest parameters (`pytest_params`) or on its own (`validate`)."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_finops.conformance._capabilities import BASE_CAPABILITIES, Capability
from agent_finops.conformance._registry import SPEC_MODULES, Check, LedgerBackend, all_checks

__all__ = ["Case", "Report", "cases", "pytest_params", "validate"]


@dataclass(frozen=True)
class Case:
    """One check on one backend; `run()` it (it opens a fresh ledger)."""

    backend: LedgerBackend
    check: Check

    @property
    def id(self) -> str:
        """`backend:check`, the pytest id."""
        return f"{self.backend.name}:{self.check.name}"

    @property
    def supported(self) -> bool:
        """Whether the backend declares the check's capability."""
        return self.check.capability in self.backend.capabilities

    def run(self) -> None:
        """Run the check on a fresh ledger of the backend (raises what the check raises)."""
        self.check.run(self.backend)

    def __str__(self) -> str:
        """The case's id."""
        return self.id


def cases(
    *backends: LedgerBackend, capabilities: Iterable[Capability | str] | None = None
) -> list[Case]:
    """Every check on every backend (of the given capabilities only, if any), in order."""
    wanted = None if capabilities is None else {Capability(c) for c in capabilities}
    return [
        Case(backend, check)
        for backend in backends
        for check in all_checks()
        if wanted is None or check.capability in wanted
    ]


def pytest_params(
    *backends: LedgerBackend,
    capabilities: Iterable[Capability | str] | None = None,
    marks: Sequence[Any] = (),
    capability_marks: Mapping[Capability | str, Sequence[Any]] | None = None,
) -> list[Any]:
    """The suite as `pytest.param`s of `Case`s, for `@pytest.mark.parametrize("case", ...)`.

    Each case's id is `backend:check`; a check of a capability the backend does not declare
    is marked skipped (with the reason). `marks` go on every case (e.g. your database's
    marker); `capability_marks` on the cases of a capability (e.g. `{"processes":
    [pytest.mark.slow]}`). Call it at import time of your test module: it asks pytest to
    rewrite the suite's asserts, so a failed check shows the values it compared.
    """
    import pytest

    for module in SPEC_MODULES:
        if module not in sys.modules:  # registering an imported module would only warn
            pytest.register_assert_rewrite(module)
    extra = {Capability(k): list(v) for k, v in (capability_marks or {}).items()}
    params = []
    for case in cases(*backends, capabilities=capabilities):
        case_marks = [*marks, *extra.get(case.check.capability, [])]
        if not case.supported:
            case_marks.append(
                pytest.mark.skip(
                    reason=f"{case.backend.name} does not declare {case.check.capability.value!r}"
                )
            )
        params.append(pytest.param(case, id=case.id, marks=case_marks))
    return params


@dataclass
class Report:
    """What `validate` found: check names passed, failed (with the traceback), skipped."""

    backend: str
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    capability_of: dict[str, Capability] = field(default_factory=dict)

    def passed_all_base(self) -> bool:
        """Whether every check of a base capability passed."""
        return not any(self.capability_of[name] in BASE_CAPABILITIES for name in self.failed)

    def passed_all(self) -> bool:
        """Whether every check that ran passed."""
        return not self.failed

    def summary(self) -> str:
        """One line per failure, then the counts."""
        lines = [f"FAILED {self.backend}:{name}\n{text}" for name, text in self.failed.items()]
        lines.append(
            f"{self.backend}: {len(self.passed)} passed, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped"
        )
        return "\n".join(lines)


def validate(
    backend: LedgerBackend, *, capabilities: Iterable[Capability | str] | None = None
) -> Report:
    """Run the suite on `backend` without pytest; a `Report` of every check."""
    report = Report(backend.name)
    for case in cases(backend, capabilities=capabilities):
        name = case.check.name
        report.capability_of[name] = case.check.capability
        if not case.supported:
            report.skipped[name] = f"does not declare {case.check.capability.value!r}"
            continue
        try:
            case.run()
        except Exception:
            report.failed[name] = traceback.format_exc()
        else:
            report.passed.append(name)
    return report
