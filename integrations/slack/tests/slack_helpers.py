"""Helpers shared by the Slack tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from agent_finops import SQLLedger
from agent_finops.ledger import CostEvent, RunRecord
from agent_finops_slack.testing import (
    SIGNING_SECRET,
    Message,
    SlackEmulator,
    block_actions,
    post_interaction,
    wait_for,
)

CHANNEL = "C0APPROVALS"
SEARCH_CHANNEL = "C0SEARCH"


def seed_run(ledger: SQLLedger, trace_id: str, costs: dict[tuple[str, str], str]) -> None:
    """A run with cost events: {(node, model or tool name): cost}."""
    now = datetime.now(UTC)
    ledger.write(
        runs=[RunRecord(trace_id=trace_id, name="graph", started_at=now, tags={"team": "qa"})],
        events=[
            CostEvent(
                event_id=f"{trace_id}-{i}",
                trace_id=trace_id,
                span_id=f"s{i}",
                kind="tool" if name.startswith("tool:") else "model",
                name=name.removeprefix("tool:"),
                provider="openai",
                created_at=now,
                node_path=node,
                tags={},
                cost=Decimal(cost),
                price_source="test",
                price_version="1",
            )
            for i, ((node, name), cost) in enumerate(costs.items())
        ],
    )


# -- end to end: the app and `agent-finops serve` as subprocesses ---------------------------

APP = Path(__file__).with_name("slack_app.py")
ALICE, BOB, MALLORY, LEAD = "U0ALICE", "U0BOB", "U0MALLORY", "U0LEAD"
APPROVERS = [f"slack:{ALICE}", f"slack:{BOB}", "slack-group:S0LEADS"]


@dataclass
class World:
    """Files and environment shared by the app and the approver service of one test."""

    root: Path
    slack: SlackEmulator
    limit: str = "0.0003"
    expire_after: str | None = None
    on_expiry: str = "deny"
    sweep_every: float = 0.2
    extra_config: dict[str, Any] = field(default_factory=dict)
    ledger_url: str | None = None
    """Default: a SQLite file under `root`."""

    @property
    def db_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.root}/ledger.sqlite"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AGENT_FINOPS_DB_URL": self.db_url,
            "SLACK_APP_CHECKPOINTS": str(self.root / "checkpoints.sqlite"),
            "SLACK_APP_POLICY": str(self.root / "policy.yaml"),
            "SLACK_APP_RESULTS": str(self.results),
            "SLACK_API_URL": self.slack.base_url,
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_APP_TOKEN": self.slack.app_token,
            "PYTHONUNBUFFERED": "1",
        }

    def write(self) -> Path:
        approvals: dict[str, Any] = {
            "approvers": [{"allow": APPROVERS}],
            "on_expiry": self.on_expiry,
        }
        if self.expire_after:
            approvals["expire_after"] = self.expire_after
        policy = {
            "budgets": [{"id": "run-cap", "limit": self.limit, "period": "run", "action": "pause"}],
            "approvals": approvals,
        }
        (self.root / "policy.yaml").write_text(yaml.safe_dump(policy))
        config: dict[str, Any] = {
            "ledger": self.db_url,
            "targets": f"{APP}:targets",
            "policy": "policy.yaml",
            "slack": {
                "default_channel": CHANNEL,
                "base_url": self.slack.base_url,
                "raise_options": ["1"],
                "retry_backoff": 0.5,
            },
            "serve": {"port": 0, "sweep_every": self.sweep_every, "recover_after": 2},
        }
        for section, values in self.extra_config.items():
            config.setdefault(section, {}).update(values)
        path = self.root / "slack.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def pause(self, thread_id: str) -> list[str]:
        """Run the app until it pauses (in this process; the service is another); the ids."""
        import slack_app  # imported once per test process (langgraph takes seconds)

        saved = dict(os.environ)
        os.environ.update(self.env())
        try:
            return slack_app.start(thread_id)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def pause_in_subprocess(self, thread_id: str) -> list[str]:
        """Run the app until it pauses, in a process of its own that then exits."""
        result = subprocess.run(
            [sys.executable, str(APP), thread_id],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        ids: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
        return ids

    def outcomes(self, thread_id: str) -> list[dict[str, Any]]:
        path = self.results / f"{thread_id}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_outcomes(
        self, thread_id: str, count: int, timeout: float = 60
    ) -> list[dict[str, Any]]:
        assert wait_for(lambda: len(self.outcomes(thread_id)) >= count, timeout), (
            f"{thread_id}: {self.outcomes(thread_id)}"
        )
        return self.outcomes(thread_id)

    def message_of(self, approval_id: str) -> Message:
        """The Slack message of a request (waits until it is posted)."""
        found: list[Message] = []

        def posted() -> bool:
            found[:] = [
                m
                for m in list(self.slack.messages.values())
                if approval_id in m.text or approval_id in str(m.blocks)
            ]
            return bool(found)

        assert self.slack.wait(posted, 30), f"no message for {approval_id}"
        return found[0]

    def click(
        self,
        server: ServeProcess,
        approval_id: str,
        user: str,
        action_id: str = "finops_approve_raise:1",
        **kw: Any,
    ) -> tuple[int, str, float]:
        message = self.message_of(approval_id)
        payload = block_actions(
            approval_id,
            user=user,
            action_id=action_id,
            channel=message.channel,
            message_ts=message.ts,
        )
        return post_interaction(server.url, payload, **kw)


class ServeProcess:
    """`agent-finops serve` started as a subprocess; stopped with SIGTERM."""

    def __init__(self, config: Path, env: dict[str, str], *extra: str) -> None:
        self.log_path = config.with_name(f"serve-{uuid.uuid4().hex[:6]}.log")
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("agent-finops")),
                "serve",
                "--config",
                str(config),
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = ""
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(90):
            self.stop()
            raise AssertionError(f"serve did not start:\n{self.logs()}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                self.url = match.group(1)
                self._ready.set()
            if "connected in Socket Mode" in line:
                self._ready.set()
        self._ready.set()

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, *, kill: bool = False) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        return code

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
