"""The command line as a new user types it: options anywhere, clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_finops import SQLLedger
from agent_finops.cli import main as cli


@pytest.fixture
def url(tmp_path: Path) -> str:
    """An existing (empty) ledger."""
    address = f"sqlite:///{tmp_path}/l.sqlite"
    SQLLedger.from_url(address).close()
    return address


def test_db_is_accepted_before_and_after_every_sub_command(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["--db", url, "runs"]) == 0
    assert cli(["runs", "--db", url]) == 0
    assert cli(["approvals", "--db", url, "list"]) == 0
    assert cli(["approvals", "list", "--db", url]) == 0
    assert cli(["--db", url, "approvals", "list", "--status", "expired"]) == 0
    assert "no expired approval requests" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "-5", "abc", "10000000000"])
def test_bad_limits_are_refused_without_a_traceback(
    bad: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["--db", url, "runs", "--limit", bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "Traceback" not in err


def test_resume_needs_the_apps_targets(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--db", url, "approvals", "approve", "abc", "--resume"]) == 1
    assert "--resume needs your app's resume targets" in capsys.readouterr().err
    assert cli(["--db", url, "approvals", "approve", "abc", "--resume", "--targets", "x"]) == 1
    assert "module:attribute" in capsys.readouterr().err
    missing = "no_such_module_here:targets"
    assert cli(["--db", url, "approvals", "approve", "abc", "--resume", "--targets", missing]) == 1
    assert "cannot import resume targets" in capsys.readouterr().err


def test_bad_extra_is_a_clear_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--db", url, "approvals", "approve", "abc", "--extra", "lots"]) == 1
    assert "--extra" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["runs"], ["report", "abc"], ["approvals", "list"]])
def test_a_mistyped_ledger_path_is_an_error_and_creates_nothing(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir" / "ledger.sqlite"
    assert cli(["--db", f"sqlite:///{missing}", *command]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert not missing.parent.exists()  # no directory, no empty ledger


def test_a_malformed_ledger_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--db", "postgresql+nosuchdriver://x/y", "runs"]) == 1
    err = capsys.readouterr().err
    assert "agent-finops: error:" in err and "Traceback" not in err


def test_an_ambiguous_run_prefix_lists_the_candidates(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from agent_finops import RunRecord

    with SQLLedger.from_url(url) as ledger:
        at = datetime(2026, 12, 1, tzinfo=UTC)
        ledger.write(
            runs=[RunRecord(trace_id=f"01ab-{i}", name="g", started_at=at) for i in range(3)]
        )
    assert cli(["--db", url, "report", "01ab"]) == 1
    err = capsys.readouterr().err
    assert all(f"01ab-{i}" in err for i in range(3))
