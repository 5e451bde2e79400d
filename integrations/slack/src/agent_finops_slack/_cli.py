"""`agent-finops serve`, added to the core CLI through the `agent_finops.commands` entry point.

Importing this module is cheap (argparse only): Slack, Bolt and waitress are imported when
the command runs, so `agent-finops runs` stays fast with this package installed.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `serve` to the `agent-finops` sub-commands."""
    cmd = sub.add_parser(
        "serve",
        parents=[common],
        help="the Slack approver service: Approve/Deny buttons resume paused runs",
        description="Serve Slack interactions (HTTP or Socket Mode): decide approval requests "
        "from button clicks, resume the paused runs through your app's resume targets, expire "
        "requests nobody answered. See docs/slack.md.",
    )
    cmd.add_argument("--config", required=True, help="the approver service's YAML config")
    cmd.add_argument(
        "--targets",
        default=None,
        help="your app's ResumeTargets as module:attr or file.py:attr (default: the "
        "config's `targets`, then $AGENT_FINOPS_RESUME_TARGETS)",
    )
    cmd.add_argument("--mode", choices=["http", "socket"], default=None, help="override serve.mode")
    cmd.add_argument("--host", default=None, help="override serve.host (HTTP mode)")
    cmd.add_argument("--port", type=int, default=None, help="override serve.port (0: any free)")
    cmd.add_argument(
        "--check",
        action="store_true",
        help="validate the config, secrets, targets and bot token, then exit",
    )
    cmd.add_argument("--log-level", default="INFO", help="DEBUG, INFO (default), WARNING")
    cmd.set_defaults(plugin=run)


def run(args: argparse.Namespace) -> int:
    """Run `agent-finops serve` with parsed arguments; returns the exit code."""
    import sys

    from slack_bolt.error import BoltError

    from agent_finops_slack._serve import build_service, configure_logging, run_service

    configure_logging(args.log_level)
    try:
        service = build_service(args.config, db=args.db, targets=args.targets, mode=args.mode)
    except BoltError as exc:  # auth.test refused the token
        print(f"agent-finops: error: Slack refused the bot token: {exc}", file=sys.stderr)
        return 1
    if args.check:
        service.close()
        print(f"agent-finops serve: {args.config} is valid ({service.mode} mode)")
        return 0
    return run_service(service, host=args.host, port=args.port)
