"""`agent-finops alerts [--scan] [--since WHEN] [--json] [--policy FILE] [--by team,agent]`.

Without `--scan`: the stored alerts, newest first. With `--scan`: run the anomaly detectors
now over the windows that ended since `--since` (default: the last hour), keep the new
alerts once in the ledger and deliver them to the log and the console (a scan repeated
over the same hours raises nothing twice).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent_finops.alerts import (
    AlertChannel,
    AlertService,
    ConsoleAlertChannel,
    LogChannel,
    alert_channel,
    alert_data,
    alert_line,
)
from agent_finops.anomalies import DEFAULT_CHECK, AnomalyScanner
from agent_finops.cli._args import csv_arg, limit_arg, moment_arg, moment_in, text_arg
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import AlertRecord, Ledger
from agent_finops.policy import load_policy
from agent_finops.policy.periods import parse_duration
from agent_finops.rollups import zone

__all__ = ["register", "run", "since_of"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `alerts`."""
    cmd = sub.add_parser(
        "alerts",
        parents=[common],
        help="list spend alerts, or scan for anomalies now (--scan)",
        description="Spend alerts: cost spikes, cost per task, call-rate jumps, forecasts.",
    )
    cmd.add_argument(
        "--scan",
        action="store_true",
        help="run the detectors now, keep and deliver new alerts (log and console)",
    )
    cmd.add_argument(
        "--since",
        type=moment_arg,
        default=None,
        help="a duration back from now (24h, 7d) or a date/time in --tz: alerts raised since "
        "then, or with --scan the windows that ended since then (default: the last hour)",
    )
    cmd.add_argument(
        "--by",
        type=csv_arg,
        action="append",
        default=None,
        help="scan scope, tags joined by commas (team,agent); repeatable (default: team)",
    )
    cmd.add_argument(
        "--policy", type=text_arg, default=None, help="policy YAML: forecast its budgets"
    )
    cmd.add_argument(
        "--tz",
        type=text_arg,
        default=None,
        help="time zone of slots (default: the policy's, else UTC)",
    )
    cmd.add_argument(
        "--to",
        type=text_arg,
        action="append",
        default=[],
        help="with --scan, also deliver to an installed channel: NAME[=CONFIG], e.g. "
        "slack=slack.yaml (repeatable)",
    )
    cmd.add_argument("--limit", type=limit_arg, default=50, help="most alerts listed (default 50)")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.set_defaults(with_ledger=run)


def since_of(text: str | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    """`--since`: a duration (`24h`) back from `now`, or a date or datetime in `tz`."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped[-1:] in ("s", "m", "h", "d") and stripped[:-1].strip().isdigit():
        return now - parse_duration(stripped)
    return moment_in(stripped, tz, name="since")


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """List or scan."""
    policy = None if args.policy is None else load_policy(args.policy)
    if args.tz is not None:
        tz = zone(args.tz)
    else:
        tz = policy.tz if policy is not None else ZoneInfo("UTC")
    now = datetime.now(tz)
    since = since_of(args.since, now, tz)
    if not args.scan:
        if args.by is not None or args.to:
            raise ConfigurationError(
                "--by and --to go with --scan", field="--by/--to", expected="--scan"
            )
        return _list(ledger.list_alerts(since=since, limit=args.limit), as_json=args.json)
    scopes = args.by if args.by is not None else [["team"]]
    scanner = AnomalyScanner(ledger, scopes=scopes, policy=policy, tz=tz)
    found = scanner.scan(since=since or now - DEFAULT_CHECK, now=now)
    channels: list[AlertChannel] = [LogChannel()]
    if not args.json:
        channels.append(ConsoleAlertChannel(sys.stdout))
    for target in args.to:
        name, _, config = target.partition("=")
        channels.append(alert_channel(name.strip(), config.strip() or None))
    raised = {a.alert_id for a in AlertService(ledger, channels).publish(found)}
    if args.json:
        data = [{**alert_data(a), "new": a.alert_id in raised} for a in found]
        print(json.dumps(data, indent=2))
        return 0
    known = [a for a in found if a.alert_id not in raised]
    for alert in known:
        print(f"(raised before) {alert_line(alert)}")
    print(f"{len(raised)} new alert{'s' * (len(raised) != 1)}, {len(known)} raised before")
    return 0


def _list(alerts: list[AlertRecord], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps([alert_data(a) for a in alerts], indent=2))
        return 0
    if not alerts:
        print("no alerts")
        return 0
    for alert in alerts:
        delivered = ", ".join(alert.delivered) or "nowhere yet"
        print(f"{alert.created_at:%Y-%m-%d %H:%M} {alert_line(alert)} (delivered: {delivered})")
    return 0
