"""The Slack messages: an approval request (Block Kit, with buttons), its outcome, an alert.

Built with `slack_sdk.models.blocks`; every message also has a plain-text fallback (what
notifications and screen readers show). A button's `value` is the approval id and nothing
else: what a click means is looked up in the ledger, never taken from the message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from agent_finops.approvals import ThresholdAlert, default_extra
from agent_finops.exceptions import RunNotFound
from agent_finops.ledger import ApprovalRecord

__all__ = [
    "APPROVE_ACTION",
    "DENY_ACTION",
    "RAISE_ACTION",
    "CostDriver",
    "alert_message",
    "cost_drivers",
    "decided_message",
    "request_message",
    "who",
]

APPROVE_ACTION: Final = "finops_approve"
DENY_ACTION: Final = "finops_deny"
RAISE_ACTION: Final = "finops_approve_raise"
"""`finops_approve_raise:<amount>`: approve with this much overspend (one of the configured
`raise_options`; the service refuses any other amount)."""
ACTIONS_BLOCK: Final = "finops_decision"
TOP_DRIVERS: Final = 3
_STATUS_ICON: Final = {"approved": ":white_check_mark:", "denied": ":no_entry:"}


@dataclass(frozen=True, slots=True)
class CostDriver:
    """What a run spent the most on: one node's model or tool."""

    node: str | None
    kind: str
    """`model` or `tool`."""
    name: str
    cost: Decimal
    calls: int


def cost_drivers(ledger: Any, trace_id: str, *, top: int = TOP_DRIVERS) -> list[CostDriver]:
    """The run's `top` costliest (node, model/tool) pairs, from its cost events."""
    try:
        trace = ledger.load_trace(trace_id)
    except RunNotFound:  # the run's rows are still on their way to the ledger
        return []
    totals: dict[tuple[str | None, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for event in trace.events:
        entry = totals[(event.node_path, event.kind, event.name)]
        if event.cost is not None:
            entry[0] += event.cost
        entry[1] += 1
    drivers = [CostDriver(n, k, name, c, calls) for (n, k, name), (c, calls) in totals.items()]
    drivers.sort(key=lambda d: (-d.cost, d.node or "", d.name))
    return drivers[:top]


def amount(value: Decimal | None, unit: str) -> str:
    """An amount in its unit: `$0.0042`, `12,000 tokens`, `3 calls`."""
    if value is None:
        return "unknown"
    if unit == "usd":
        text = format(value.normalize(), "f") if value else "0"
        if "." in text and len(text.split(".")[1]) < 2:
            text = f"{value:.2f}"
        return f"${text}"
    number = f"{value:,.0f}" if value == value.to_integral_value() else format(value, "f")
    return f"{number} {unit}"


def who(actor: str | None) -> str:
    """An approver id as Slack shows it: `<@U123>` for Slack users, else a readable name."""
    if not actor:
        return "someone"
    kind, _, ident = actor.partition(":")
    if kind == "slack" and ident:
        return f"<@{ident}>"
    if kind == "console" and ident:
        return f"{ident} (console)"
    if kind == "resume" and ident:
        return f"{ident} (the app)"
    if actor == "expiry":
        return "expiry"
    return actor


def when(at: datetime | None) -> str:
    """A time Slack renders in the reader's own time zone (with a UTC fallback)."""
    if at is None:
        return "never"
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    fallback = f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _plain_when(at: datetime | None) -> str:
    if at is None:
        return "never"
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str | None) -> str:
    return f"`{_escape(text)}`" if text else "-"


def _field(label: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=f"*{label}*\n{value}"[:2000])


def _drivers_text(drivers: Sequence[CostDriver]) -> str:
    if not drivers:
        return "*Top cost drivers*\nnone recorded yet"
    lines = [
        f"{i}. {_code(d.node) if d.node else '(outside any node)'} · {d.kind} "
        f"{_code(d.name)}: {amount(d.cost, 'usd')}" + (f" ({d.calls} calls)" if d.calls > 1 else "")
        for i, d in enumerate(drivers, 1)
    ]
    return "*Top cost drivers*\n" + "\n".join(lines)


def _summary(request: ApprovalRecord) -> str:
    if request.unit == "loop":
        return f"loop rule {request.rule_id}: {request.spent} seen, limit {request.limit}"
    return (
        f"{request.rule_id}: spent {amount(request.spent, request.unit)} of "
        f"{amount(request.limit, request.unit)}, asks {amount(request.estimate, request.unit)} more"
    )


def request_message(
    request: ApprovalRecord,
    *,
    drivers: Sequence[CostDriver] = (),
    raise_options: Sequence[Decimal] = (),
) -> tuple[str, list[Block]]:
    """The fallback text and blocks of a pending request, with Approve / Deny buttons."""
    tags = request.tags
    team = tags.get("team")
    text = (
        f"Approval needed{f' for {team}' if team else ''}: {_summary(request)} "
        f"(run {request.trace_id}, approval {request.approval_id})"
    )
    return text, [*_request_body(request, drivers), _buttons(request, raise_options)]


def _request_body(request: ApprovalRecord, drivers: Sequence[CostDriver]) -> list[Block]:
    tags = request.tags
    spent = (
        f"{request.spent} of {request.limit} (loop)"
        if request.unit == "loop"
        else f"{amount(request.spent, request.unit)} of {amount(request.limit, request.unit)} "
        f"({request.unit})"
    )
    fields = [
        _field("Agent", _code(tags.get("agent"))),
        _field("Team", _code(tags.get("team"))),
        _field("Task", _code(tags.get("task"))),
        _field("Rule", _code(request.rule_id)),
        _field("Run", _code(request.trace_id)),
        _field("Thread", _code(request.thread_id)),
        _field("Spent vs limit", spent),
        _field(
            "Estimated extra",
            "-" if request.unit == "loop" else amount(request.estimate, request.unit),
        ),
        _field("Policy version", _code(request.policy_version)),
        _field("Expires", when(request.expires_at)),
    ]
    scope = ", ".join(f"{k}={v}" for k, v in request.scope.items()) or "all runs"
    return [
        HeaderBlock(text=f"Approval needed: {request.rule_id}"[:150]),
        SectionBlock(
            text=MarkdownTextObject(text=_escape(request.message or _summary(request))[:3000])
        ),
        SectionBlock(fields=fields),
        SectionBlock(text=MarkdownTextObject(text=_drivers_text(drivers)[:3000])),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"approval `{request.approval_id}` · scope {_escape(scope)} · "
                    f"asked {when(request.created_at)}"
                )
            ]
        ),
    ]


def _buttons(request: ApprovalRecord, raise_options: Sequence[Decimal]) -> ActionsBlock:
    grant = default_extra(request)
    label = "Approve" if grant is None else f"Approve (+{amount(grant, request.unit)})"
    elements: list[ButtonElement] = [
        ButtonElement(
            text=label[:75], action_id=APPROVE_ACTION, value=request.approval_id, style="primary"
        )
    ]
    if request.unit == "usd":
        for option in raise_options:
            elements.append(
                ButtonElement(
                    text=f"Approve, raise cap by {amount(option, 'usd')}"[:75],
                    action_id=f"{RAISE_ACTION}:{format(option, 'f')}",
                    value=request.approval_id,
                )
            )
    elements.append(
        ButtonElement(
            text="Deny",
            action_id=DENY_ACTION,
            value=request.approval_id,
            style="danger",
            confirm=ConfirmObject(
                title="Deny this run?",
                text=f"The run stops cleanly at {request.rule_id}; its partial results are kept.",
                confirm="Deny",
                deny="Cancel",
                style="danger",
            ),
        )
    )
    return ActionsBlock(block_id=ACTIONS_BLOCK, elements=elements)


def decided_message(
    request: ApprovalRecord, *, drivers: Sequence[CostDriver] = ()
) -> tuple[str, list[Block]]:
    """The request message once decided or expired: the buttons give way to the outcome."""
    outcome = outcome_text(request, mrkdwn=True)
    plain = outcome_text(request, mrkdwn=False)
    text = f"{plain}: {_summary(request)} (approval {request.approval_id})"
    blocks = _request_body(request, drivers)
    blocks.append(SectionBlock(block_id=ACTIONS_BLOCK, text=MarkdownTextObject(text=outcome)))
    return text, blocks


def outcome_text(request: ApprovalRecord, *, mrkdwn: bool) -> str:
    """`Approved by @user at time, extra $X` / `Denied by ...` / `Expired undecided ...`."""
    at = when(request.decided_at) if mrkdwn else _plain_when(request.decided_at)
    by = who(request.decided_by) if mrkdwn else (request.decided_by or "someone")
    extra = "" if request.extra is None else f", extra {amount(request.extra, request.unit)}"
    reason = f": {_escape(request.reason)}" if request.reason and mrkdwn else ""
    if request.decided_by == "expiry":
        if request.status == "approved":
            line = f"Expired undecided at {at}: approved by the expiry rule{extra}; the run goes on"
        else:
            line = f"Expired undecided at {at}: the run was stopped"
        return f":hourglass: {line}" if mrkdwn else line
    if request.status == "approved":
        line = f"Approved by {by} at {at}{extra}"
    elif request.status == "denied":
        line = f"Denied by {by} at {at}{reason}"
    elif request.status == "expired":
        line = f"Expired undecided at {at}: the run was stopped"
    else:
        line = "Waiting for a decision"
    icon = _STATUS_ICON.get(request.status, ":hourglass:")
    return f"{icon} {line}" if mrkdwn else line


def alert_message(alert: ThresholdAlert) -> str:
    """The plain message of a threshold alert."""
    scope = ", ".join(f"{k}={v}" for k, v in alert.scope.items()) or "all runs"
    return (
        f":warning: Budget {alert.rule_id} ({scope}) is at {alert.percent.normalize():f}%: "
        f"{amount(alert.used, alert.unit)} of {amount(alert.limit, alert.unit)} used or reserved "
        f"(run {alert.trace_id})"
    )


def routing_tags(request: ApprovalRecord) -> Mapping[str, str]:
    """The tags a request is routed by: the run's tags, with the refused scope on top."""
    return {**request.tags, **request.scope}
