"""`agent-finops runs`, `report RUN_ID [--json]`, `approvals list|approve|deny`, and plugins."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from agent_finops.approvals import ApprovalService, Approver, ResumeTargets, approval_payload
from agent_finops.approvals._answer import to_extra
from agent_finops.cli import (
    _alerts,
    _chargeback,
    _dashboard,
    _dead_letters,
    _export,
    _finance_report,
    _rollup,
)
from agent_finops.cli._args import limit_arg as _limit
from agent_finops.cli._args import text_arg as _text
from agent_finops.cli._plugins import add_plugin_commands
from agent_finops.exceptions import ConfigurationError, FinOpsError
from agent_finops.ledger import DEFAULT_URL, ApprovalRecord, Ledger, RunSummary, SQLLedger
from agent_finops.reports import load_run_report, money, write_html

ENV_URL = "AGENT_FINOPS_DB_URL"
ENV_TARGETS = "AGENT_FINOPS_RESUME_TARGETS"

COMMAND_MODULES: tuple[ModuleType, ...] = (
    _rollup,
    _export,
    _chargeback,
    _finance_report,
    _alerts,
    _dashboard,
    _dead_letters,
)
"""Built-in commands kept in their own modules: each has `register(sub, common)`, which adds
its parser and sets `with_ledger=run` on it, `run(ledger, args) -> int` getting the ledger
opened read-only (`create=False`)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-finops", description="Cost reports for AI-agent runs."
    )
    db_help = f"ledger URL (default: ${ENV_URL} or {DEFAULT_URL})"
    parser.add_argument("--db", type=_text, default=None, help=db_help)
    # `--db` is also accepted after the sub-command (`agent-finops runs --db URL`, the order
    # people type); SUPPRESS keeps a value given before the sub-command from being reset.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=_text, default=argparse.SUPPRESS, help=db_help)
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", parents=[common], help="list recent runs with their totals")
    runs.add_argument("--limit", type=_limit, default=20, help="how many runs (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    runs.add_argument("--thread", type=_text, default=None, help="only the runs of this thread")
    runs.add_argument(
        "--all", action="store_true", help="also list resumes that did nothing (hidden by default)"
    )
    report = sub.add_parser("report", parents=[common], help="cost tree and rollups of one run")
    report.add_argument(
        "run_id",
        type=_text,
        help="run (trace) id or thread id, or a unique prefix; a run of a thread shows the "
        "whole thread",
    )
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument(
        "--run-only", action="store_true", help="only this invocation, not its whole thread"
    )
    report.add_argument(
        "--html", metavar="PATH", type=_text, help="also write a self-contained HTML page"
    )

    approvals = sub.add_parser(
        "approvals", parents=[common], help="list and decide paused runs' approval requests"
    )
    verbs = approvals.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", parents=[common], help="approval requests, newest first")
    listing.add_argument(
        "--status",
        default="pending",
        choices=["pending", "approved", "denied", "expired", "all"],
        help="which requests (default: pending)",
    )
    listing.add_argument("--limit", type=_limit, default=50)
    listing.add_argument("--json", action="store_true")
    for verb, text in (("approve", "approve a request"), ("deny", "deny a request")):
        cmd = verbs.add_parser(verb, parents=[common], help=text)
        cmd.add_argument("approval_id", type=_text, help="approval id, or a unique prefix of one")
        cmd.add_argument("--reason", type=_text, default=None, help="why (kept in the audit trail)")
        if verb == "approve":
            cmd.add_argument(
                "--extra",
                default=None,
                help="overspend this run may make on the rule, in its unit "
                "(default: max(the paused call's estimate, 20%% of the limit))",
            )
        cmd.add_argument(
            "--resume",
            action="store_true",
            help="then resume the checkpointed run through the target your app registered",
        )
        cmd.add_argument(
            "--targets",
            type=_text,
            default=None,
            help="your app's ResumeTargets, as module:attr or file.py:attr "
            f"(default: ${ENV_TARGETS})",
        )
    for module in COMMAND_MODULES:
        module.register(sub, common)
    add_plugin_commands(sub, common)  # e.g. `serve` from agent-finops-slack
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    url = args.db or os.environ.get(ENV_URL) or DEFAULT_URL
    plugin = getattr(args, "plugin", None)
    try:
        if plugin is not None:  # a sub-command from another package opens what it needs
            return int(plugin(args))
        # Never creates a ledger: a mistyped path is an error, not an empty "no runs".
        with SQLLedger.from_url(url, create=False) as ledger:
            command = getattr(args, "with_ledger", None)
            if command is not None:
                return int(command(ledger, args))
            if args.command == "runs":
                return _runs(ledger, args)
            if args.command == "approvals":
                return _approvals(ledger, args)
            return _report(
                ledger, args.run_id, args.json, args.html, whole_thread=not args.run_only
            )
    except FinOpsError as exc:
        print(f"agent-finops: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `agent-finops export | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141  # 128 + SIGPIPE, as other tools end in a closed pipe
    except OSError as exc:  # the ledger file or --html path cannot be opened (name too long, ...)
        print(f"agent-finops: error: {exc.strerror or exc}: {exc.filename!r}", file=sys.stderr)
        return 1


def _runs(ledger: Ledger, args: argparse.Namespace) -> int:
    summaries = ledger.list_runs(limit=args.limit, thread_id=args.thread)
    hidden = 0
    if not args.all:
        kept = [s for s in summaries if not _noop_resume(s)]
        hidden, summaries = len(summaries) - len(kept), kept
    if args.json:
        data = [
            {
                "trace_id": s.run.trace_id,
                "thread_id": s.run.thread_id,
                "name": s.run.name,
                "status": s.run.status,
                "started_at": s.run.started_at.isoformat(),
                "cost_usd": format(s.cost, "f"),
                "unpriced": s.unpriced,
                "model_calls": s.model_calls,
                "tool_calls": s.tool_calls,
                "tags": s.run.tags,
            }
            for s in summaries
        ]
        print(json.dumps(data, indent=2))
        return 0
    if not summaries:
        print("no runs recorded yet" if not hidden else f"only {hidden} no-op resume(s) (--all)")
        return 0
    header = ("run id", "thread", "started (UTC)", "name", "status", "calls", "unpriced", "cost")
    rows = [
        (
            s.run.trace_id,
            s.run.thread_id or "-",
            f"{s.run.started_at:%Y-%m-%d %H:%M:%S}",
            s.run.name,
            s.run.status,
            str(s.model_calls + s.tool_calls),
            str(s.unpriced),
            money(s.cost),
        )
        for s in summaries
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for cells in (header, *rows):
        print(
            "  ".join(
                c.ljust(w) if i < 5 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    if hidden:
        print(f"({hidden} resume(s) that did nothing not shown; --all lists them)")
    return 0


def _noop_resume(s: RunSummary) -> bool:
    """A resume of a thread that made no call (e.g. a second resume of a finished thread)."""
    return bool(s.run.thread_id) and s.model_calls + s.tool_calls == 0 and s.run.status == "ok"


def _report(
    ledger: Ledger, run_id: str, as_json: bool, html: str | None, *, whole_thread: bool
) -> int:
    report = load_run_report(ledger, run_id, whole_thread=whole_thread)
    if html is not None:  # --html PATH writes the page; the JSON is printed too with --json
        write_html(report, html)
        print(f"wrote {html}", file=sys.stderr)
        if not as_json:
            return 0
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0


def _approvals(ledger: Ledger, args: argparse.Namespace) -> int:
    if args.verb == "list":
        status = None if args.status == "all" else args.status
        requests = ApprovalService(ledger).requests(status=status, limit=args.limit)
        if args.json:
            print(json.dumps([_approval_json(a) for a in requests], indent=2))
            return 0
        if not requests:
            print(f"no {args.status if status else ''} approval requests".replace("  ", " "))
            return 0
        for a in requests:
            scope = ", ".join(f"{k}={v}" for k, v in a.scope.items()) or "all calls"
            print(
                f"{a.approval_id}  {a.status:<8}  rule {a.rule_id} ({scope})  spent {a.spent} "
                f"of {a.limit} {a.unit}, asks {a.estimate} more  run {a.trace_id}"
                + (f"  thread {a.thread_id}" if a.thread_id else "")
                + (f"  decided by {a.decided_by}" if a.decided_by else "")
            )
        return 0
    extra = None
    if getattr(args, "extra", None) is not None:
        try:
            extra = to_extra(args.extra)
        except ValueError as exc:
            raise ConfigurationError(
                "bad --extra", field="--extra", value=args.extra[:100], expected=str(exc)
            ) from None
    targets = None
    if args.resume:  # load the app's targets first: a bad spec must not half-do the job
        spec = args.targets or os.environ.get(ENV_TARGETS)
        if not spec:
            raise ConfigurationError(
                "--resume needs your app's resume targets",
                field="--targets",
                expected=f"module:attr or file.py:attr (or set ${ENV_TARGETS})",
            )
        targets = ResumeTargets.load(spec)
    service = ApprovalService(ledger)
    decided = service.decide(
        args.approval_id,
        approve=args.verb == "approve",
        by=Approver.console(),
        extra=extra,
        reason=args.reason,
    )
    print(
        f"{decided.approval_id} {decided.status} by {decided.decided_by}"
        + (f" (extra {decided.extra} {decided.unit})" if decided.extra is not None else "")
        + (f": {decided.reason}" if decided.reason else "")
    )
    if targets is not None:
        result = service.resume(decided, targets)
        print(f"resumed thread {decided.thread_id}")
        if isinstance(result, str):
            print(result)
    return 0


def _approval_json(a: ApprovalRecord) -> dict[str, object]:
    payload = approval_payload(a)
    del payload["answer_with"]
    return payload
