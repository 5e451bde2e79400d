"""Bad input at every boundary raises a clear `ConfigurationError`, and nothing is half-written.

Each test pins one class of input the fuzz tests (`tests/test_fuzz_input.py`) found or could
find: tags, counter keys, policy files and numbers, approval answers, CLI arguments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent_finops import (
    ConfigurationError,
    CostTracker,
    InMemoryLedger,
    SQLLedger,
    UnpricedWarning,
    attribute,
)
from agent_finops.approvals import parse_answer
from agent_finops.attribution import validate_tags
from agent_finops.cli import main as cli
from agent_finops.policy import Policy
from agent_finops.policy.periods import MAX_COUNTER_KEY_LENGTH, counter_key, parse_duration

NOW = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)

# -- tags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a\ud800b", "lone surrogate"),
        ("\udfff", "lone surrogate"),
        ("a\x00b", "control character"),
        ("line\nbreak", "control character"),
        ("x" * 257, "too long"),
        (10**300, "too long"),
        pytest.param(10**5000, "too long", id="int-of-5000-digits"),  # str() of it raises
    ],
)
def test_bad_tag_values_name_the_tag(value: object, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as info:
        validate_tags({"team": value})
    assert info.value.field == "tags.team"
    str(info.value).encode("utf-8")  # the message itself is printable


@pytest.mark.parametrize(
    "key",
    ["team\n", "", "1team", "t" * 65, "tëam", pytest.param(10**5000, id="huge-int"), ("a",)],
)
def test_bad_tag_keys(key: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid tag key") as info:
        validate_tags({key: "x"})  # type: ignore[dict-item]
    str(info.value).encode("utf-8")


def test_good_tags_pass_unchanged() -> None:
    tags = {"team": "support", "task": "ticket\t42 ✓", "n": 3, "x": 1.5, "gone": None}
    assert validate_tags(tags) == {"team": "support", "task": "ticket\t42 ✓", "n": "3", "x": "1.5"}
    assert validate_tags({"v": "x" * 256}) == {"v": "x" * 256}


def test_bad_tags_are_refused_before_anything_is_recorded() -> None:
    ledger = InMemoryLedger()
    with pytest.raises(ConfigurationError):
        CostTracker(ledger, tags={"team": "\ud800"})
    tracker = CostTracker(ledger)
    try:
        with pytest.raises(ConfigurationError, match=r"tags\.team"):
            tracker.start_span(
                "r", parent_span_id=None, name="g", kind="run", tags={"team": "\x00"}
            )
        with pytest.raises(ConfigurationError), attribute(team="a\ud800"):
            pass
        tracker.flush()
        assert ledger.list_runs() == []
        assert tracker.write_errors == 0
    finally:
        tracker.close()


def test_ids_names_and_errors_that_cannot_be_stored_are_escaped_not_wedging(
    tmp_path: Path,
) -> None:
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        tracker = CostTracker(ledger)
        try:
            tracker.start_span(
                "r\ud800", parent_span_id=None, name="g\x00", kind="run", thread_id="t\udcff"
            )
            tracker.start_span(
                "m", parent_span_id="r\ud800", name="llm", kind="model", node="n\x00"
            )
            with pytest.warns(UnpricedWarning):
                tracker.record_model_call("m", model="gpt\ud800", provider="x\x00", usage=None)
            tracker.end_span("m")
            tracker.end_span("r\ud800", error=RuntimeError("boom \udc80"))
            tracker.start_span("later", parent_span_id=None, name="ok", kind="run")
            tracker.end_span("later")
            tracker.flush(timeout=10)
            assert tracker.write_errors == 0
        finally:
            tracker.close()
        runs = {summary.run.trace_id: summary for summary in ledger.list_runs()}
        assert set(runs) == {"r\\ud800", "later"}
        assert runs["r\\ud800"].run.error == "RuntimeError: boom \\udc80"
        assert runs["r\\ud800"].model_calls == 1


# -- counter keys --------------------------------------------------------------------------


def test_long_counter_keys_are_hashed_deterministically() -> None:
    tz = ZoneInfo("UTC")
    scope = "team=" + "%7C" * 256
    key = counter_key("rule", scope, "daily", NOW, tz)
    assert len(key) <= MAX_COUNTER_KEY_LENGTH
    assert key.startswith("rule|sha256=")
    assert key == counter_key("rule", scope, "daily", NOW, tz)
    assert key != counter_key("rule", scope, "daily", NOW + timedelta(days=1), tz)
    assert key != counter_key("rule", scope + "x", "daily", NOW, tz)
    long_task = counter_key("cap", "*", "task", NOW, tz, task="|" * 256)
    assert len(long_task) <= MAX_COUNTER_KEY_LENGTH
    assert counter_key("rule", "team=a", "daily", NOW, tz) == "rule|team=a|2026-11-22"


def test_long_tag_values_in_a_star_scope_give_a_storable_key() -> None:
    policy = Policy.from_mapping(
        {
            "budgets": [
                {
                    "id": "per-user",
                    "scope": {"team": "*", "user": "*", "task": "*"},
                    "limit": "5",
                    "period": "task",
                }
            ]
        }
    )
    tags = validate_tags({"team": "|" * 256, "user": "=" * 256, "task": "," * 256})
    key = policy.budgets[0].counter_key(tags, now=NOW, tz=policy.tz, run_id="run-1")
    assert key is not None and len(key) <= MAX_COUNTER_KEY_LENGTH


# -- policy numbers and durations ----------------------------------------------------------


def _budget(**fields: object) -> dict[str, object]:
    return {"budgets": [{"id": "b", "limit": "5", "period": "daily", **fields}]}


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        (_budget(limit="1e400"), "budgets[0].limit", "at most 1e15"),
        (_budget(limit="NaN"), "budgets[0].limit", "finite"),
        (_budget(limit="Infinity"), "budgets[0].limit", "finite"),
        (_budget(limit="-Infinity"), "budgets[0].limit", "finite"),
        (_budget(limit=1e400), "budgets[0].limit", "finite"),
        (_budget(limit="1e-400"), "budgets[0].limit", "18 decimal places"),
        (_budget(period="rolling", window="99999999d"), "budgets[0].window", "at most 3660d"),
        (_budget(period="rolling", window="9" * 5000 + "d"), "budgets[0].window", "3660d"),
        (_budget(period="rolling", window=timedelta(days=10**6)), "budgets[0].window", "3660d"),
        ({"fallback_reservation_usd": "1e30"}, "fallback_reservation_usd", "at most 1e15"),
        ({"default_max_output_tokens": 10**30}, "default_max_output_tokens", "at most"),
        (
            {"rate_limits": [{"id": "r", "window": "1m", "max_calls": 10**20}]},
            "rate_limits[0].max_calls",
            "at most",
        ),
        (
            {"loops": [{"id": "l", "kind": "ping_pong", "max_cycles": 10**12}]},
            "loops[0].max_cycles",
            "at most",
        ),
        (
            {"loops": [{"id": "l", "kind": "repeated_tool_call", "max_repeats": 10**9}]},
            "loops[0].max_repeats",
            "at most",
        ),
        (
            {
                "loops": [
                    {"id": "l", "kind": "model_call_burst", "max_calls": 10**9, "window": "1m"}
                ]
            },
            "loops[0].max_calls",
            "at most",
        ),
        ({"approvals": {"expire_after": "10000000d"}}, "approvals.expire_after", "3660d"),
    ],
)
def test_unbounded_numbers_are_refused_at_load(
    data: dict[str, object], field: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Policy.from_mapping(data, source="p.yaml")
    assert info.value.field == field
    assert expected in str(info.value)
    assert str(info.value).startswith("p.yaml:")
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_budget(scope={"team": "\ud800"}), "budgets[0].scope.team"),
        (_budget(scope={"team": "a\x00"}), "budgets[0].scope.team"),
        (_budget(scope={"team": "x" * 300}), "budgets[0].scope.team"),
        (_budget(scope={"\ud800": "x"}), "budgets[0].scope.\\ud800"),
        (
            {"approvals": {"approvers": [{"allow": ["console:\ud800"]}]}},
            "approvals.approvers[0].allow[0]",
        ),
        (
            {"approvals": {"approvers": [{"allow": ["console:a\x00"]}]}},
            "approvals.approvers[0].allow[0]",
        ),
        ({"\ud800": 1}, "<policy>"),
    ],
)
def test_unstorable_text_in_a_policy_is_refused_at_load(
    data: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Policy.from_mapping(data)
    assert info.value.field == field
    str(info.value).encode("utf-8")


def test_unprintable_values_do_not_hide_the_policy_error() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    for data in ({"budgets": deep}, deep, _budget(limit=10**5000)):
        with pytest.raises(ConfigurationError) as info:
            Policy.from_mapping(data)
        assert len(str(info.value)) < 1000


def test_largest_accepted_window_works_at_the_first_call() -> None:
    policy = Policy.from_mapping(_budget(period="rolling", window="3660d"))
    key = policy.budgets[0].counter_key({}, now=NOW, tz=policy.tz)
    assert key is not None and key.endswith("/3660d")
    assert parse_duration("3660d") == timedelta(days=3660)


# -- policy files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"budgets: [\xff\xfe]\n", "not UTF-8"),
        (b"a: " + b"[" * 200 + b"]" * 200 + b"\n", "nested deeper"),
        (
            b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
            + b"".join(
                f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n".encode()
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            ),
            "aliases are expanded",
        ),
        (b"budgets: []\nbudgets: []\n", "key repeated on line 2"),
        (b"x" * (2 << 20), "too large"),
        (b"budgets: [\n", "invalid YAML"),
    ],
)
def test_hostile_policy_files_give_a_short_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=message) as info:
        Policy.from_yaml(path)
    assert str(info.value).startswith(str(path))
    assert len(str(info.value)) < 1000


# -- approval answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        ({"decision": "approve", "extra": "NaN"}, "extra"),
        ({"decision": "approve", "extra": "-1"}, "extra"),
        ({"decision": "approve", "extra": "1e13"}, "extra"),
        ({"decision": "approve", "extra": "1e-400"}, "extra"),
        ({"decision": "approve", "extra": 2.5}, "extra"),
        pytest.param({"decision": "approve", "extra": 10**5000}, "extra", id="huge-int-extra"),
        pytest.param({"decision": 10**5000}, "decision", id="huge-int-decision"),
        ({"decision": "approve", "by": "a\ud800"}, "by"),
        ({"decision": "approve", "reason": "a\x00b"}, "reason"),
        ({"decision": "approve", "approval_id": "a\nb"}, "approval_id"),
        ({"decision": "approve", "reason": "x" * 2001}, "reason"),
    ],
)
def test_bad_approval_answers(answer: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError, match="bad approval answer") as info:
        parse_answer(answer)
    assert info.value.field == field
    assert len(str(info.value)) < 1000
    str(info.value).encode("utf-8")


def test_good_approval_answers() -> None:
    answer = parse_answer({"decision": "approve", "extra": "2.50", "reason": "ok\nthanks"})
    assert answer is not None and answer.extra == Decimal("2.50")
    zero = parse_answer({"decision": "approve", "extra": "0"})
    assert zero is not None and zero.extra == 0
    three = parse_answer({"decision": "approve", "extra": 3})
    assert three is not None and three.extra == 3


# -- CLI arguments -------------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    ledger_url = f"sqlite:///{tmp_path}/ledger.sqlite"
    with SQLLedger.from_url(ledger_url):
        pass
    return ledger_url


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "\x00"],
        ["report", "a\udcff"],  # argv bytes that were not UTF-8
        ["runs", "--thread", "a\x00"],
        ["runs", "--limit", "9" * 5000],
        ["runs", "--limit", "-1"],
        ["approvals", "approve", "\udc80"],
        ["approvals", "deny", "x", "--reason", "\x00"],
        ["approvals", "approve", "x", "--targets", "\x00", "--resume"],
        ["report", "x" * 3000],
    ],
)
def test_bad_cli_arguments_are_usage_errors(
    url: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(["--db", url, *argv], capsys)
    assert code == 2
    assert "error: argument" in err
    assert len(err) < 2000


@pytest.mark.parametrize("extra", ["NaN", "-1", "1e400", "9" * 5000, "1e-30", "Infinity"])
def test_unbounded_extra_is_refused(
    url: str, extra: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(["--db", url, "approvals", "approve", "x", "--extra", extra], capsys)
    assert code == 1
    assert "bad --extra" in err and "1e12" in err


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("bogus://x", "supports SQLite and PostgreSQL"),
        ("mysql://a/b", "supports SQLite and PostgreSQL"),
        ("not a url", "malformed ledger URL"),
        ("http://[::1", "malformed ledger URL"),
        ("postgresql+nodriver://a/b", "cannot open ledger URL"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:////nonexistent/dir/l.sqlite", "no ledger file"),
        ("sqlite:///" + "a" * 300 + ".sqlite", "error"),  # file name too long (OSError)
        ("sqlite:///" + "a" * 3000, "longer than"),
        ("sqlite:///\x00", "control characters"),
    ],
)
def test_bad_db_urls_are_clear_errors(
    db: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(["--db", db, "runs"], capsys)
    assert code in (1, 2)
    assert message in err
    assert len(err) < 2000


def test_cli_html_to_an_unwritable_path_is_an_error(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with SQLLedger.from_url(url) as ledger:
        tracker = CostTracker(ledger)
        tracker.start_span("run-1", parent_span_id=None, name="g", kind="run")
        tracker.end_span("run-1")
        tracker.close()
    code, err = _cli(["--db", url, "report", "run-1", "--html", "/nonexistent/d/x.html"], capsys)
    assert code == 1
    assert "error" in err
