"""Property tests (hypothesis): bad input at every boundary only ever raises `FinOpsError`.

Tags, policy mappings and policy files (generated YAML text and bytes), approval answers
and the CLI's argv. Whatever is accepted is usable: tags are storable text, every counter
key a valid policy produces fits a budget store, and a tracker that refuses bad tags has
written nothing. Sized to run in a few seconds (`max_examples`, no deadline, no database).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_finops import (
    ConfigurationError,
    CostTracker,
    SQLLedger,
    UnpricedWarning,
)
from agent_finops.approvals import ApprovalAnswer, parse_answer
from agent_finops.attribution import validate_tags
from agent_finops.cli import main as cli
from agent_finops.policy import Policy
from agent_finops.policy.periods import MAX_COUNTER_KEY_LENGTH

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written next to the sources
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- strategies ----------------------------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, categories=None), max_size=300),  # surrogates too
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfffy", "\n", "a|b=c,d%", "*", "é"]),
    st.integers(0, 400).map(lambda n: "t" * n),
    st.integers(0, 200).map(lambda n: "|=,%" * n),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    nasty_text,
    st.binary(max_size=10),
    st.sampled_from(["1e400", "NaN", "-Infinity", "1e-400", "0", "-1", "99999999999999d", "1m"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(nasty_text, st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)
tag_keys = st.one_of(
    st.sampled_from(["team", "task", "user", "agent", "team\n", "1x", "", "a" * 65, "critical"]),
    nasty_text,
    st.integers(),
)
tag_values = st.one_of(scalars, nasty_text)
tag_maps = st.dictionaries(tag_keys, tag_values, max_size=5)

amounts = st.one_of(
    st.sampled_from(["25.00", "1", "0.000000000000000001", "1e15", "1e16", "1e400", "NaN"]),
    st.sampled_from(["-3", "0", "Infinity", "1e-19", 5, 0, -1, 10**20, 1.5, True, None]),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
durations = st.one_of(
    st.sampled_from(["1m", "90s", "2h", "7d", "3660d", "3661d", "0s", "1x", "", "9" * 30 + "d"]),
    st.builds(lambda n, u: f"{n}{u}", st.integers(-5, 10**14), st.sampled_from("smhdx")),
    st.integers(),
    st.builds(timedelta, seconds=st.integers(-10, 10**10)),
)
counts = st.one_of(st.integers(-3, 20), st.integers(), st.sampled_from([10**9, 10**9 + 1, "3"]))
selectors = st.dictionaries(tag_keys, st.one_of(st.just("*"), nasty_text), max_size=3)
periods = st.sampled_from(["run", "task", "hourly", "daily", "weekly", "monthly", "rolling", "x"])


def _rule(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not ...}


maybe = st.just(...)
budgets = st.builds(
    lambda i, s, u, lim, p, w, t, a: _rule(
        {
            "id": i,
            "scope": s,
            "unit": u,
            "limit": lim,
            "period": p,
            "window": w,
            "thresholds": t,
            "action": a,
        }
    ),
    st.one_of(st.sampled_from(["b1", "b2"]), nasty_text),
    st.one_of(maybe, selectors),
    st.one_of(maybe, st.sampled_from(["usd", "tokens", "calls", "eur"])),
    amounts,
    periods,
    st.one_of(maybe, st.none(), durations),
    st.one_of(maybe, st.lists(st.one_of(amounts, st.integers(-1, 101)), max_size=3)),
    st.one_of(maybe, st.sampled_from(["deny", "pause", "warn", "explode"])),
)
rate_limits = st.builds(
    lambda i, s, w, c, usd: _rule(
        {"id": i, "scope": s, "window": w, "max_calls": c, "max_usd": usd}
    ),
    st.sampled_from(["r1", "r2", "b1"]),
    st.one_of(maybe, selectors),
    durations,
    st.one_of(maybe, counts),
    st.one_of(maybe, amounts),
)
loops = st.builds(
    lambda i, k, n, w: _rule(
        {"id": i, "kind": k, "max_repeats": n, "max_cycles": n, "max_calls": n, "window": w}
    ),
    st.sampled_from(["l1", "l2"]),
    st.sampled_from(["repeated_tool_call", "model_call_burst", "ping_pong", "nope"]),
    counts,
    st.one_of(maybe, durations),
).map(lambda r: {k: v for k, v in r.items() if _loop_field(r.get("kind"), k)})


def _loop_field(kind: object, key: str) -> bool:
    wanted = {
        "repeated_tool_call": {"max_repeats"},
        "model_call_burst": {"max_calls", "window"},
        "ping_pong": {"max_cycles"},
    }.get(str(kind), {"max_repeats", "window"})
    return key in ("id", "kind") or key in wanted


policies = st.builds(
    lambda tz, fb, b, r, lo, extra: _rule(
        {
            "timezone": tz,
            "fallback_reservation_usd": fb,
            "budgets": b,
            "rate_limits": r,
            "loops": lo,
            **extra,
        }
    ),
    st.one_of(maybe, st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus", "", "../etc"])),
    st.one_of(maybe, amounts),
    st.one_of(maybe, st.lists(budgets, max_size=3)),
    st.one_of(maybe, st.lists(rate_limits, max_size=2)),
    st.one_of(maybe, st.lists(loops, max_size=2)),
    st.one_of(st.just({}), st.dictionaries(nasty_text, junk, max_size=2)),
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
valid_tags = st.dictionaries(
    st.sampled_from(["team", "task", "user", "agent"]),
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=256),
    max_size=4,
)


def _assert_printable(exc: BaseException) -> None:
    text = str(exc)
    text.encode("utf-8")  # printable as is: no lone surrogate leaks into a message
    assert len(text) < 2000


# -- tags ----------------------------------------------------------------------------------


@FUZZ
@given(tag_maps)
def test_validate_tags_accepts_only_storable_text(tags: dict[Any, Any]) -> None:
    try:
        clean = validate_tags(tags)
    except ConfigurationError as exc:
        _assert_printable(exc)
        return
    for key, value in clean.items():
        assert isinstance(key, str) and isinstance(value, str)
        assert len(value) <= 256
        value.encode("utf-8")
        assert "\x00" not in value


@pytest.fixture(scope="module")
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/ledger.sqlite"
        with SQLLedger.from_url(url):
            pass
        yield url


_span_ids = iter(range(10**9))


@pytest.fixture(scope="module")
def shared_ledger(sqlite_url: str) -> Iterator[SQLLedger]:
    with SQLLedger.from_url(sqlite_url, create=False) as ledger:
        yield ledger


@settings(FUZZ, max_examples=30)  # each example starts a writer thread and flushes to SQLite
@given(tag_maps, tag_maps, nasty_text, nasty_text, st.one_of(st.none(), nasty_text))
def test_a_tracker_given_bad_input_writes_nothing_half_and_never_wedges(
    shared_ledger: SQLLedger,
    base: dict[Any, Any],
    own: dict[Any, Any],
    name: str,
    model: str,
    error: str | None,
) -> None:
    ledger = shared_ledger
    before = len(ledger.list_runs(limit=100_000))
    span = f"run-{next(_span_ids)}{name[:50]}"
    tracker: CostTracker | None = None
    try:
        tracker = CostTracker(ledger, tags=base)
        tracker.start_span(span, parent_span_id=None, name=name, kind="run", tags=own)
        tracker.start_span(span + "/m", parent_span_id=span, name="llm", kind="model")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnpricedWarning)
            tracker.record_model_call(span + "/m", model=model, provider=name, usage=None)
        tracker.end_span(span + "/m")
        tracker.end_span(span, error=error)
        accepted = True
    except ConfigurationError as exc:
        _assert_printable(exc)
        accepted = False
    finally:
        if tracker is not None:
            tracker.close()
    if tracker is not None:
        assert tracker.write_errors == 0  # accepted input never poisons the writer
    after = ledger.list_runs(limit=100_000)
    assert len(after) == before + (1 if accepted else 0)


# -- policies ------------------------------------------------------------------------------


def _exercise(policy: Policy, tags: dict[str, str], now: datetime) -> None:
    """Everything a valid policy does at a call must work: keys fit a store, no crash."""
    assert len(policy.version) == 16
    for budget in policy.budgets:
        key = budget.counter_key(tags, now=now, tz=policy.tz, run_id="run-1")
        assert key is None or 0 < len(key) <= MAX_COUNTER_KEY_LENGTH
        assert key is None or ("\x00" not in key and key.encode("utf-8"))
        budget.crossed_thresholds(Decimal(0), budget.limit)
    for limit in policy.rate_limits:
        key = limit.counter_key(tags, now=now, tz=policy.tz)
        assert key is None or 0 < len(key) <= MAX_COUNTER_KEY_LENGTH
        assert key is None or ("\x00" not in key and key.encode("utf-8"))
    for rule in policy.approvals.approvers:
        for approver in rule.allow:
            approver.encode("utf-8")


@FUZZ
@given(st.one_of(policies, junk), valid_tags, moments)
def test_policy_from_mapping_raises_only_configuration_errors(
    data: Any, tags: dict[str, str], now: datetime
) -> None:
    try:
        policy = Policy.from_mapping(data, source="fuzz.yaml")
    except ConfigurationError as exc:
        _assert_printable(exc)
        assert str(exc).startswith("fuzz.yaml:")
        return
    _exercise(policy, tags, now)


def _as_yaml(data: Any) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError, TypeError):
        return b"budgets: []\n"


yaml_texts = st.one_of(
    policies.map(_as_yaml),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda head, depth, tail: (head + "[" * depth + "]" * depth + tail).encode(),
        st.sampled_from(["budgets: ", "a: ", "- "]),
        st.integers(0, 100),
        st.sampled_from(["", "\n", "\nbudgets: []\n", "\nbudgets: []\nbudgets: []\n"]),
    ),
    st.builds(
        lambda n, fan: (
            "a: &a ["
            + ",".join(["x"] * fan)
            + "]\n"
            + "".join(
                f"a{i + 1}: &a{i + 1} [" + ",".join([f"*a{i or ''}"] * fan) + "]\n"
                for i in range(n)
            )
        ).encode(),
        st.integers(0, 8),
        st.integers(1, 12),
    ),
    st.sampled_from([b"\xff\xfe\x00", b"!!python/object:os.system x", b"a: !!binary ????", b"%"]),
)


@FUZZ
@given(yaml_texts, moments)
def test_load_policy_raises_only_configuration_errors(content: bytes, now: datetime) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_bytes(content)
        try:
            policy = Policy.from_yaml(path)
        except ConfigurationError as exc:
            _assert_printable(exc)
            assert str(exc).startswith(str(path))
            return
    _exercise(policy, {"team": "t", "task": "x"}, now)


# -- approval answers ----------------------------------------------------------------------

answers = st.one_of(
    junk,
    st.fixed_dictionaries(
        {"decision": st.one_of(st.sampled_from(["approve", "deny", "yes", "NO "]), scalars)},
        optional={
            "approval_id": tag_values,
            "by": tag_values,
            "extra": st.one_of(amounts, scalars),
            "reason": tag_values,
            "other": junk,
        },
    ),
)


@FUZZ
@given(answers)
def test_parse_answer_raises_only_configuration_errors(value: Any) -> None:
    try:
        answer = parse_answer(value)
    except ConfigurationError as exc:
        _assert_printable(exc)
        return
    if answer is None:
        return
    assert isinstance(answer, ApprovalAnswer)
    for text in (answer.by, answer.reason, answer.approval_id):
        if text is not None:
            text.encode("utf-8")
            assert "\x00" not in text
    if answer.extra is not None:
        assert answer.extra.is_finite() and 0 <= answer.extra <= Decimal(10) ** 12


# -- CLI -----------------------------------------------------------------------------------

cli_words = st.sampled_from(
    [
        "runs",
        "report",
        "approvals",
        "list",
        "approve",
        "deny",
        "--json",
        "--all",
        "--limit",
        "--thread",
        "--status",
        "--reason",
        "--extra",
        "--resume",
        "--targets",
        "--html",
        "--run-only",
        "--db",
        "-h",
        "all",
        "pending",
        "0",
        "-1",
        "1e400",
        "NaN",
        "bogus://x",
        "sqlite:///:memory:",
        "sqlite:///\x00",
        "x:y",
        "run-1",
    ]
)
argvs = st.lists(st.one_of(cli_words, cli_words, nasty_text), max_size=7)


@FUZZ
@given(argvs, st.booleans())
def test_cli_never_shows_a_traceback(sqlite_url: str, argv: list[str], db_first: bool) -> None:
    if "--html" in argv or "--resume" in argv:  # no files written, no app code imported
        argv = [a for a in argv if a not in ("--html", "--resume")]
    full = ["--db", sqlite_url, *argv] if db_first else argv
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli(full)
        except SystemExit as exc:  # argparse: usage error (2) or --help (0)
            code = exc.code if isinstance(exc.code, int) else 2
    assert code in (0, 1, 2), (full, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue()
    if code == 1:
        assert err.getvalue().startswith("agent-finops: error:")
    assert len(err.getvalue()) < 5000
