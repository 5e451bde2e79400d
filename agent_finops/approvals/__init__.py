"""Approvals: a paused run's request for a human decision, decided once, from any channel.

The policy engine files an `ApprovalRecord` through the `ApprovalService` when a `pause`
rule trips. Any process sharing the ledger decides it through the same service (the console
approver, Slack buttons, the run's own resume value): the service checks the approver
against the scope's allow-list (`Approvers`), makes the first decision win, records it with
the approver's id, notifies every `ApprovalChannel`, and expires undecided requests. A
decided run resumes through a target the application registered (`ResumeTargets`); nothing
the ledger names is imported.
"""

from agent_finops.approvals._answer import ApprovalAnswer, parse_answer
from agent_finops.approvals._approvers import ANYONE, Approver, Approvers
from agent_finops.approvals._channel import ApprovalChannel, ConsoleChannel, ThresholdAlert
from agent_finops.approvals._payload import APPROVAL_KIND, approval_payload, default_extra
from agent_finops.approvals._resume import ResumeRequest, ResumeTargets
from agent_finops.approvals._service import ApprovalService, ExpiryOutcome

__all__ = [
    "ANYONE",
    "APPROVAL_KIND",
    "ApprovalAnswer",
    "ApprovalChannel",
    "ApprovalService",
    "Approver",
    "Approvers",
    "ConsoleChannel",
    "ExpiryOutcome",
    "ResumeRequest",
    "ResumeTargets",
    "ThresholdAlert",
    "approval_payload",
    "default_extra",
    "parse_answer",
]
