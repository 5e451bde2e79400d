"""Approvals: a paused run's request for a human decision, decided once, from anywhere.

The policy engine files an `ApprovalRecord` when a `pause` rule trips. Any process sharing the
ledger decides it with `decide()` (the console approver, a Slack button, your own UI): the
decision is atomic (first decision wins), recorded as a policy decision with the approver's
name, and grants the run the approved overspend. `resume()` then continues the checkpointed
run through the app's resume hook (`ApprovalRecord.resume_target`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent_finops.exceptions import ApprovalNotFound, ConfigurationError
from agent_finops.ledger import ApprovalRecord, DecisionRecord, SQLLedger

__all__ = ["decide", "default_extra", "load_resume_hook", "resume"]


def default_extra(request: ApprovalRecord) -> Decimal | None:
    """What an approval grants when the approver names no amount.

    Budgets and caps: the greater of the paused call's estimate and 20% of the limit.
    Loop rules: None (the rule is waived for the rest of the run).
    """
    if request.unit == "loop":
        return None
    return max(request.estimate, request.limit / 5)


def decide(
    ledger: SQLLedger,
    approval_id: str,
    *,
    approve: bool,
    by: str,
    extra: Decimal | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> ApprovalRecord:
    """Decide a pending request (id or unique prefix); first decision wins.

    Raises `ApprovalNotFound` for an unknown id and `AlreadyDecided` when already decided.
    """
    request = ledger.get_approval(approval_id)
    if request is None:
        raise ApprovalNotFound(f"no approval request {approval_id!r}", key=approval_id)
    if extra is not None and (not extra.is_finite() or extra < 0):
        raise ConfigurationError(
            "bad approved extra", field="extra", value=extra, expected="a finite amount >= 0"
        )
    if approve and extra is None:
        extra = default_extra(request)
    at = now or datetime.now(UTC)
    decided = ledger.decide_approval(
        request.approval_id,
        status="approved" if approve else "denied",
        by=by,
        at=at,
        reason=reason,
        extra=extra if approve else None,
    )
    ledger.write(
        decisions=[
            DecisionRecord(
                decision_id=f"{decided.approval_id}:decided",
                trace_id=decided.trace_id,
                call_id=None,
                action="approved" if approve else "denied",
                rule_id=decided.rule_id,
                policy_version=decided.policy_version,
                created_at=at,
                scope=decided.scope,
                limit=decided.limit,
                observed=decided.spent,
                estimate=decided.estimate,
                unit=decided.unit,
                message=reason or "",
                actor=by,
                tags=decided.tags,
            )
        ]
    )
    return decided


ResumeHook = Callable[[str, dict[str, Any]], Any]


def load_resume_hook(target: str) -> ResumeHook:
    """Import `module:function` or `path/to/file.py:function`.

    The hook is called as `hook(thread_id, answer)` and resumes the app's graph, e.g.
    `graph.invoke(Command(resume=answer), {"configurable": {"thread_id": thread_id},
    "metadata": {"finops": answer["tags"]}, ...})`; `answer["tags"]` are the paused run's
    tags, which the resumed invocation needs (mandatory tags, attribution).
    """
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            "bad resume target", field="resume_target", value=target, expected="module:function"
        )
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser().resolve()
        spec = importlib.util.spec_from_file_location(f"_finops_resume_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(
                "cannot load resume target file", field="resume_target", value=target
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")
        module = importlib.import_module(module_name)
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise ConfigurationError(
            "resume target is not a function", field="resume_target", value=target
        )
    return hook  # type: ignore[no-any-return]


def resume(request: ApprovalRecord) -> Any:
    """Resume the decided request's run through its resume hook; returns what the hook returns."""
    if not request.resume_target or not request.thread_id:
        raise ConfigurationError(
            "this request cannot be resumed from here: it has no resume target or thread id "
            "(give PolicyEngine(resume_target='module:function') and run with a thread_id)",
            field="resume_target",
            value=request.resume_target,
        )
    answer = {
        "decision": "approve" if request.status == "approved" else "deny",
        "by": request.decided_by,
        "approval_id": request.approval_id,
        # The paused run's tags, for the resumed invocation (mandatory tags, attribution).
        "tags": {k: v for k, v in request.tags.items() if k != "thread_id"},
    }
    return load_resume_hook(request.resume_target)(request.thread_id, answer)
