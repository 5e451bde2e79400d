"""Finance exports: schema, exact allocation per event, GL codes, same bytes twice, the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agent_finops import ConfigurationError, SQLLedger
from agent_finops.allocation import allocation_rules_from_mapping
from agent_finops.cli import main
from agent_finops.exports import EXPORT_COLUMNS, GLMapping, load_gl_mapping, write_export
from agent_finops.ledger import CostEvent, Ledger, RunRecord

D = Decimal
DAY = datetime(2026, 11, 5, tzinfo=UTC)

RULES = allocation_rules_from_mapping(
    {
        "version": 1,
        "owner": "team",
        "rules": [{"id": "guardrails", "type": "shared_pool", "match": {"agent": "guardrail"}}],
    }
)
GL = GLMapping.from_mapping(
    {
        "version": 1,
        "default": "6999",
        "mappings": [
            {"match": {"cost_center": "cc-1"}, "bucket": ["tokens"], "code": "6110"},
            {"match": {"cost_center": ["cc-1", "cc-2"]}, "code": "6120"},
        ],
    }
)


def ev(event_id: str, minutes: int, cost: str | None, **tags: str) -> CostEvent:
    return CostEvent(
        event_id=event_id,
        trace_id="run-1",
        span_id=f"s-{event_id}",
        kind="tool" if tags.pop("tool", None) else "model",
        name="gpt-4o-mini",
        provider="openai",
        created_at=DAY + timedelta(minutes=minutes),
        node_path=None,
        tags=tags,
        cost=None if cost is None else D(cost),
        price_source="genai-prices",
        price_version="0.2",
        uncached_input_tokens=100,
        output_tokens=10,
        policy_version="pv-1",
    )


@pytest.fixture
def ledger(sqlite_ledger: SQLLedger) -> Ledger:
    sqlite_ledger.write(
        runs=[RunRecord(trace_id="run-1", name="g", started_at=DAY)],
        events=[
            ev("a", 1, "2", team="search", cost_center="cc-1", agent="planner"),
            ev("b", 2, "1", team="ads", cost_center="cc-2", agent="writer"),
            ev("g", 3, "0.1", agent="guardrail", cost_center="cc-9"),  # shared by direct usage
            ev("u", 4, None, team="ads", agent="writer"),  # unpriced
            ev("t", 5, "0.005", team="search", cost_center="cc-1", tool="1"),
            ev("late", 60 * 24, "9", team="search"),  # the next day: not exported
        ],
    )
    return sqlite_ledger


def export(ledger: Ledger, fmt: str = "csv", **kw: object) -> str:
    out = io.StringIO()
    write_export(ledger, out, start=DAY, end=DAY + timedelta(days=1), fmt=fmt, **kw)  # type: ignore[arg-type]
    return out.getvalue()


def test_csv_rows_carry_reconciliation_fields_and_gl_codes(ledger: Ledger) -> None:
    text = export(ledger, gl=GL)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert [r["event_id"] for r in rows] == ["a", "b", "g", "u", "t"]
    a, b, g, u, t = rows
    assert (a["run_id"], a["span_id"], a["policy_version"], a["currency"]) == (
        "run-1",
        "s-a",
        "pv-1",
        "USD",
    )
    assert (a["gl_code"], b["gl_code"], g["gl_code"], t["gl_code"]) == (
        "6110",
        "6120",
        "6999",
        "6120",
    )
    assert (a["raw_cost"], a["allocated_cost"], a["allocated_to"]) == ("2", "2", "search")
    assert (u["raw_cost"], u["allocated_cost"], u["allocation_rule"]) == ("", "", "(unpriced)")
    assert (t["bucket"], t["kind"]) == ("tools", "tool")
    assert a["date"] == "2026-11-05" and a["created_at"] == "2026-11-05T00:01:00.000000+00:00"


def test_allocated_parts_sum_exactly_to_each_event(ledger: Ledger) -> None:
    rows = list(csv.DictReader(io.StringIO(export(ledger, rules=RULES))))
    shared = [r for r in rows if r["event_id"] == "g"]
    assert [(r["allocated_to"], r["allocated_cost"], r["allocation_part"]) for r in shared] == [
        # shares of the whole month's direct usage (search's $9 of the next day included),
        # so the daily exports of a month allocate as the month's chargeback statement does
        ("ads", "0.008329862557267805", "1/2"),  # 0.1 x 1 / 12.005
        ("search", "0.091670137442732195", "2/2"),  # 0.1 x 11.005 / 12.005
    ]
    assert {r["allocation_rule"] for r in shared} == {"guardrails"}
    total_raw = sum(D(r["raw_cost"] or 0) for r in rows if r["allocation_part"].startswith("1/"))
    assert sum(D(r["allocated_cost"] or 0) for r in rows) == total_raw == D("3.105")


def test_the_same_day_exports_the_same_bytes_and_json_matches_csv(ledger: Ledger) -> None:
    first, again = export(ledger, rules=RULES, gl=GL), export(ledger, rules=RULES, gl=GL)
    assert first == again
    as_json = json.loads(export(ledger, "json", rules=RULES, gl=GL))
    from_csv = list(csv.DictReader(io.StringIO(first)))
    assert all(list(r) == list(EXPORT_COLUMNS) for r in as_json)
    for j, c in zip(as_json, from_csv, strict=True):
        assert {k: "" if v is None else str(v) for k, v in j.items()} == c
    assert export(ledger, "json", rules=RULES, gl=GL) == export(ledger, "json", rules=RULES, gl=GL)


def test_gl_mapping_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "gl.yaml"
    bad.write_text("version: 1\nmappings:\n  - code: '6100'\n    bucket: [gold]\n")
    with pytest.raises(ConfigurationError) as caught:
        load_gl_mapping(bad)
    assert str(bad) in str(caught.value) and "default" in str(caught.value)
    bad.write_text("version: 1\ndefault: '1'\nmappings:\n  - code: '6100'\n    bucket: [gold]\n")
    with pytest.raises(ConfigurationError, match=r"mappings\.0\.bucket"):
        load_gl_mapping(bad)


def test_cli_export_a_day_to_a_file_silently_when_piped(
    ledger: SQLLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, gl = tmp_path / "rules.yaml", tmp_path / "gl.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - {id: guardrails, type: shared_pool, match: {agent: guardrail}}\n"
    )
    gl.write_text("version: 1\ndefault: '6999'\n")
    out = tmp_path / "day.csv"
    url = str(ledger.engine.url)
    argv = ["export", "--db", url, "--day", "2026-11-05", "--allocate", str(rules), "--gl", str(gl)]
    assert main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""  # no progress line when not on a terminal
    assert out.read_text() == export(
        ledger, rules=RULES, gl=GLMapping.from_mapping({"version": 1, "default": "6999"})
    )
    assert main([*argv, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6  # 5 events, one split in two
    assert main(["export", "--db", url, "--day", "2026-13-01"]) == 1
    assert "not a date" in capsys.readouterr().err


def test_export_into_a_closed_pipe_ends_quietly(ledger: SQLLedger, tmp_path: Path) -> None:
    """`agent-finops export | head -1`: no traceback, no error message, status 141."""
    import subprocess
    import sys

    ledger.write(events=[ev(f"bulk{i}", 10, "0.01", team="search") for i in range(2000)])
    url = str(ledger.engine.url)  # ~1 MB of JSON: far more than a pipe holds
    cmd = (
        f"{sys.executable} -c 'from agent_finops.cli import main; raise SystemExit(main())' "
        f"export --db {url} --from 2026-11-01 --to 2026-12-01 --format json | head -c 10"
    )
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert done.stdout == '[\n{"date":'[:10]
    assert done.stderr == "" and done.returncode == 141


def test_csv_cells_a_spreadsheet_would_run_are_quoted(sqlite_ledger: SQLLedger) -> None:
    sqlite_ledger.write(
        runs=[RunRecord(trace_id="run-1", name="g", started_at=DAY)],
        events=[ev("f", 1, "-0.5", team='=HYPERLINK("x")', agent="@bot", project="-p")],
    )
    (row,) = list(csv.DictReader(io.StringIO(export(sqlite_ledger))))
    assert (row["team"], row["agent"], row["project"]) == ('\'=HYPERLINK("x")', "'@bot", "'-p")
    assert row["raw_cost"] == "-0.5"  # numbers are numbers
    (as_json,) = json.loads(export(sqlite_ledger, "json"))
    assert as_json["team"] == '=HYPERLINK("x")'  # JSON keeps the value


def test_cli_chargeback_statement_adds_up_to_the_cent(
    ledger: SQLLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - {id: guardrails, type: shared_pool, match: {agent: guardrail}}\n"
    )
    url = str(ledger.engine.url)
    argv = ["chargeback", "--db", url, "--month", "2026-11", "--rules", str(rules)]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    totals = {k: D(v) for k, v in data["owner_totals"].items()}
    assert sum(totals.values()) == D(data["total"]) == D("12.10")  # raw 12.105, half-even
    assert D(data["raw_total"]) == D("12.105")
    assert main(argv) == 0
    text = capsys.readouterr().out
    for owner, amount in totals.items():  # each owner's cents, as in the JSON
        assert f"  {owner}: ${amount.quantize(D('0.01'))}\n" in text
    assert "Total $12.10" in text  # whole cents shown with both places
    assert main([*argv, "--csv"]) == 0
    assert capsys.readouterr().out.startswith("owner,rule,source,raw_amount,amount\n")
