"""What a decided approval may resume: targets the application registers, never the ledger.

A ledger row names a target (`ApprovalRecord.resume_target`, e.g. `"support-graph"`); only a
target registered in this process can run. Nothing named by the database is ever imported:
the import path of the registry itself comes from whoever starts the approver (the CLI's
`--targets`, `agent-finops serve`'s config), so whoever can write the ledger cannot run code
as the approver.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from agent_finops.exceptions import ConfigurationError, UnknownResumeTarget
from agent_finops.ledger import ApprovalRecord

__all__ = ["ResumeRequest", "ResumeTargets"]


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """What a resume function gets: which thread, the decision, and the run's tags."""

    thread_id: str
    answer: dict[str, Any]
    """The resume value for the paused run (LangGraph: `Command(resume=answer)`)."""
    tags: dict[str, str] = field(default_factory=dict)
    """The paused run's tags; the resumed invocation needs them (mandatory tags)."""
    approval: ApprovalRecord | None = None


ResumeFunction = Callable[[ResumeRequest], Any]


class ResumeTargets:
    """A registry of named resume functions.

    ```python
    targets = ResumeTargets()

    @targets.register("support-graph")
    def resume_support(request: ResumeRequest) -> None:
        graph.invoke(Command(resume=request.answer), {"configurable": {"thread_id": ...}})
    ```
    """

    def __init__(self, targets: Mapping[str, ResumeFunction] | None = None) -> None:
        """Start with `targets` (name -> function)."""
        self._targets: dict[str, ResumeFunction] = {}
        for name, fn in (targets or {}).items():
            self.register(name, fn)

    @overload
    def register(self, name: str) -> Callable[[ResumeFunction], ResumeFunction]: ...
    @overload
    def register(self, name: str, fn: ResumeFunction) -> ResumeFunction: ...

    def register(
        self, name: str, fn: ResumeFunction | None = None
    ) -> ResumeFunction | Callable[[ResumeFunction], ResumeFunction]:
        """Register `fn` under `name` (also usable as a decorator)."""
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ConfigurationError(
                "bad resume target name", field="name", value=name, expected="1-200 characters"
            )

        def add(function: ResumeFunction) -> ResumeFunction:
            if not callable(function):
                raise ConfigurationError(
                    "resume target is not callable", field=name, value=function
                )
            self._targets[name] = function
            return function

        return add if fn is None else add(fn)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        """Whether `name` is registered."""
        return name in self._targets

    def resume(self, request: ApprovalRecord) -> Any:
        """Run the registered target a decided request names; returns what it returns."""
        target = request.resume_target
        fn = self._targets.get(target) if target else None
        if fn is None:
            raise UnknownResumeTarget(target, known=self.names())
        if not request.thread_id:
            raise ConfigurationError(
                "this request cannot be resumed: its run had no thread id (run the graph "
                "with a checkpointer and config['configurable']['thread_id'])",
                field="thread_id",
                value=request.thread_id,
            )
        if request.status == "pending":
            raise ConfigurationError(
                "this request is not decided yet", field="status", value=request.status
            )
        answer = {
            "approval_id": request.approval_id,
            "decision": "approve" if request.status == "approved" else "deny",
            "by": request.decided_by or "unknown",
        }
        if request.reason:
            answer["reason"] = request.reason
        return fn(ResumeRequest(request.thread_id, answer, dict(request.tags), request))

    @classmethod
    def load(cls, spec: str) -> ResumeTargets:
        """Import a registry the operator names: `package.module:attr` or `file.py:attr`.

        `attr` may be a `ResumeTargets`, a mapping of names to functions, or a function
        returning either. The spec comes from the command line or config of whoever runs
        the approver, never from the ledger.
        """
        module_name, sep, attr = spec.rpartition(":")
        if not sep or not module_name or not attr:
            raise ConfigurationError(
                "bad resume targets", field="targets", value=spec, expected="module:attribute"
            )
        try:
            if module_name.endswith(".py"):
                path = Path(module_name).expanduser().resolve()
                loader_spec = importlib.util.spec_from_file_location(
                    f"_finops_targets_{path.stem}", path
                )
                if loader_spec is None or loader_spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[loader_spec.name] = module
                loader_spec.loader.exec_module(module)
            else:
                module = importlib.import_module(module_name)
        except (ImportError, OSError) as exc:
            raise ConfigurationError(
                f"cannot import resume targets: {exc}", field="targets", value=spec
            ) from exc
        found = getattr(module, attr, None)
        if callable(found) and not isinstance(found, ResumeTargets):
            found = found()
        if isinstance(found, ResumeTargets):
            return found
        if isinstance(found, Mapping):
            return cls(found)
        raise ConfigurationError(
            "resume targets must be a ResumeTargets or a mapping of names to functions",
            field="targets",
            value=spec,
        )
