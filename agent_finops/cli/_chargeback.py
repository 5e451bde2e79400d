"""`agent-finops chargeback --month 2026-11 --rules rules.yaml [--json|--csv]`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from agent_finops.allocation import Allocator, CostLine, load_allocation_rules, measure_period
from agent_finops.cli._args import text_arg, where_arg
from agent_finops.cli._rollup import merged_where
from agent_finops.finance import month_range
from agent_finops.ledger import Ledger, bucket_of
from agent_finops.rollups import money_text

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `chargeback`."""
    cmd = sub.add_parser(
        "chargeback",
        parents=[common],
        help="a month's chargeback statement by allocation rules, rounded to cents",
    )
    cmd.add_argument("--month", type=text_arg, required=True, help="YYYY-MM")
    cmd.add_argument("--rules", type=text_arg, required=True, help="allocation rules YAML")
    cmd.add_argument("--tz", type=text_arg, default="UTC", help="calendar time zone (UTC)")
    cmd.add_argument("--where", type=where_arg, action="append", default=[], help="TAG=V1[,V2]")
    shape = cmd.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print JSON")
    shape.add_argument("--csv", action="store_true", help="print the statement's lines as CSV")
    cmd.set_defaults(with_ledger=run)


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """Print the statement (two streaming passes: measure the month, then allocate)."""
    rules = load_allocation_rules(args.rules)
    start, end = month_range(args.month, args.tz)
    where = merged_where(args.where)

    def lines() -> Any:
        for e in ledger.iter_events(start, end, where=where, batch_size=2000):
            if e.cost is not None:
                yield CostLine(tags=e.tags, amount=e.cost, bucket=bucket_of(e), id=e.event_id)

    statement = Allocator(rules, measure_period(rules, lines())).statement()
    rows = [
        {
            "owner": line.owner,
            "rule": line.rule_id,
            "source": line.source,
            "raw_amount": money_text(line.raw_amount),
            "amount": money_text(line.amount),
        }
        for line in statement.lines
    ]
    if args.json:
        data = {
            "month": args.month,
            "owner_tag": statement.owner_tag,
            "lines": rows,
            "owner_totals": {k: money_text(v) for k, v in statement.owner_totals.items()},
            "raw_total": money_text(statement.raw_total),
            "total": money_text(statement.total),
            "rounding_difference": money_text(statement.rounding_difference),
        }
        json.dump(data, sys.stdout, indent=2)
        print()
    elif args.csv:
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(rows[0]) if rows else ["owner"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(
            f"Chargeback {args.month} by {statement.owner_tag} (raw total "
            f"${money_text(statement.raw_total)})"
        )
        cents = statement.quantum  # whole quanta: shown with all their places ($2.10)
        for owner, amount in statement.owner_totals.items():
            print(f"  {owner}: ${amount.quantize(cents)}")
        print(
            f"Total ${statement.total.quantize(cents)} (rounding "
            f"{money_text(statement.rounding_difference)})"
        )
    return 0
