"""The approver service's config: valid files load; every mistake names file, field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_finops.exceptions import ConfigurationError
from agent_finops_slack import build_service, load_config

GOOD = """
targets: app.py:targets
approvals:
  expire_after: 30m
  approvers: [{scope: {team: search}, allow: ["slack:U012AB3CD", "slack-group:S0614TZR7"]}]
slack:
  default_channel: C0APPROVALS
  routes:
    - {scope: {team: search}, channel: C0SEARCH}
    - {scope: {tenant: acme, project: "*"}, channel: C0ACME}
  raise_options: ["5", "25.50"]
serve: {mode: socket, sweep_every: 2.5}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slack.yaml"
    path.write_text(text)
    return path


def test_a_good_config_loads_and_routes_by_scope(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    slack = config.slack
    assert slack.channel_for({"team": "search", "tenant": "acme"}) == "C0SEARCH"  # first wins
    assert slack.channel_for({"tenant": "acme", "project": "p1"}) == "C0ACME"
    assert slack.channel_for({"tenant": "acme"}) == "C0APPROVALS"  # project missing
    assert slack.channel_for({}) == "C0APPROVALS"
    assert [str(x) for x in slack.raise_options] == ["5", "25.5"]
    assert config.serve.mode == "socket" and config.serve.sweep_every.total_seconds() == 2.5
    settings = config.approval_settings()
    assert settings.expire_after is not None and settings.expire_after.total_seconds() == 1800
    assert settings.approvers[0].allow == ("slack:U012AB3CD", "slack-group:S0614TZR7")


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("slack: {}", "slack.default_channel", None),
        ("slack: {default_channel: 'not a channel'}", "slack.default_channel", "not a channel"),
        ("slack: {default_channel: C0A, rooms: []}", "slack.rooms", None),
        (
            "slack: {default_channel: C0A, routes: [{scope: {team: ''}, channel: C0B}]}",
            "slack.routes.0.scope",
            None,
        ),
        ("slack: {default_channel: C0A, raise_options: ['-5']}", "slack.raise_options.0", "-5"),
        ("slack: {default_channel: C0A}\nserve: {port: 99999}", "serve.port", 99999),
        (
            "slack: {default_channel: C0A}\nserve: {mode: carrier-pigeon}",
            "serve.mode",
            "carrier-pigeon",
        ),
        ("slack: {default_channel: C0A}\nserve: {sweep_every: soon}", "serve.sweep_every", "soon"),
        (
            "slack: {default_channel: C0A}\napprovals: {approvers: [{allow: [bob]}]}",
            "approvals.approvers.0.allow.0",
            "bob",
        ),
        ("slack: {default_channel: C0A, token_env: 'lower case'}", "slack.token_env", "lower case"),
    ],
)
def test_mistakes_name_the_file_the_field_and_the_value(
    tmp_path: Path, text: str, field: str, value: object
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    error = info.value
    assert error.source == str(path)
    assert error.field == field, str(error)
    if value is not None:
        assert error.value == value and repr(value) in str(error)
    assert str(path) in str(error) and error.expected


def test_policy_and_approvals_together_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "policy: p.yaml\napprovals: {}\nslack: {default_channel: C0A}")
    with pytest.raises(ConfigurationError, match="either 'policy' or 'approvals'"):
        load_config(path)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigurationError, match="invalid YAML"):
        load_config(write(tmp_path, "slack: [unclosed"))


def test_missing_secrets_and_targets_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("AGENT_FINOPS_RESUME_TARGETS", raising=False)
    path = write(tmp_path, "slack: {default_channel: C0A}")
    with pytest.raises(ConfigurationError) as info:
        build_service(path)
    assert info.value.field == "targets"
    (tmp_path / "app.py").write_text("targets = {}\n")
    path = write(tmp_path, "targets: app.py:targets\nslack: {default_channel: C0A}")
    with pytest.raises(ConfigurationError) as info:
        build_service(path)
    assert info.value.field == "SLACK_BOT_TOKEN" and "bot token is not set" in str(info.value)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    with pytest.raises(ConfigurationError) as info:
        build_service(path)
    assert info.value.field == "SLACK_SIGNING_SECRET"


def test_serve_check_validates_secrets_targets_and_the_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent_finops.cli import main as cli
    from agent_finops_slack.testing import SIGNING_SECRET, SlackEmulator

    (tmp_path / "app.py").write_text("targets = {'app': print}\n")
    with SlackEmulator() as slack:
        path = write(
            tmp_path,
            f"targets: app.py:targets\nledger: sqlite:///{tmp_path}/l.sqlite\n"
            f"slack: {{default_channel: C0A, base_url: '{slack.base_url}'}}",
        )
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        assert cli(["serve", "--config", str(path), "--check"]) == 0
        assert "is valid (http mode)" in capsys.readouterr().out
        slack.revoke()
        assert cli(["serve", "--config", str(path), "--check"]) == 1
        assert "Slack refused the bot token" in capsys.readouterr().err
        assert [c.method for c in slack.calls] == ["auth.test", "auth.test"]
    assert cli(["serve", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read config" in capsys.readouterr().err
