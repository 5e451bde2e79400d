"""Pause in one process, approve from the console in another, resume from the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_finops import SQLLedger
from agent_finops.cli import main as cli

APP = Path(__file__).with_name("approval_app.py")
pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "AGENT_FINOPS_DB_URL": f"sqlite:///{tmp_path}/ledger.sqlite",
        "APPROVAL_APP_CHECKPOINTS": str(tmp_path / "checkpoints.sqlite"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values}


def start_paused_run(env: dict[str, str], thread: str) -> str:
    result = subprocess.run(
        [sys.executable, str(APP), thread], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_approve_from_console_resumes_after_restart(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = start_paused_run(env, "thread-A")  # that process has exited: a restart
    assert cli(["approvals", "list", "--json"]) == 0
    (pending,) = json.loads(capsys.readouterr().out)
    assert pending["approval_id"] == approval_id and pending["thread_id"] == "thread-A"
    assert pending["rule_id"] == "run-cap"
    assert (
        cli(["approvals", "approve", approval_id[:10], "--by", "alice", "--extra", "1", "--resume"])
        == 0
    )
    out = capsys.readouterr().out
    assert f"{approval_id} approved by alice (extra 1 usd)" in out
    assert "messages=4 interrupted=False" in out  # go + a + b + c, run finished
    with SQLLedger.from_url(env["AGENT_FINOPS_DB_URL"]) as ledger:
        request = ledger.get_approval(approval_id)
        assert (
            request is not None and request.status == "approved" and request.decided_by == "alice"
        )
        runs = ledger.list_runs()
        statuses = [r.run.status for r in sorted(runs, key=lambda r: r.run.started_at)]
        assert statuses == ["interrupted", "ok"]  # paused run, then its resumption
        assert sum(r.model_calls for r in runs) == 3
        first = min(runs, key=lambda r: r.run.started_at)
        assert cli(["report", first.run.trace_id]) == 0
        text = capsys.readouterr().out
        assert "pause" in text and "approved by alice" in text


def test_deny_from_console_stops_the_run(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    approval_id = start_paused_run(env, "thread-B")
    assert (
        cli(["approvals", "deny", approval_id, "--by", "bob", "--reason", "too dear", "--resume"])
        == 0
    )
    out = capsys.readouterr().out
    assert "denied by bob" in out and "interrupted=True" in out  # halted with a stop outcome
    assert cli(["approvals", "approve", approval_id]) == 1  # decided once
    assert "already denied" in capsys.readouterr().err
    assert cli(["approvals", "list"]) == 0
    assert "no pending approval requests" in capsys.readouterr().out
