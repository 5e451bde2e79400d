"""docs/slack.md and the manifest stay true: their YAML validates, their Python compiles."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from agent_finops.policy import Policy
from agent_finops_slack import config_from_mapping

DOCS = Path(__file__).resolve().parents[3] / "docs"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", (DOCS / "slack.md").read_text(), flags=re.S)


def test_the_config_and_policy_examples_validate() -> None:
    policy_text, config_text = blocks("yaml")
    policy = Policy.from_mapping(yaml.safe_load(policy_text))
    assert policy.approvals.approvers[0].allow == ("slack:U012AB3CD", "slack-group:S0614TZR7")
    config = config_from_mapping(yaml.safe_load(config_text), source="docs/slack.md")
    assert config.slack.channel_for({"team": "search"}) == "C0SEARCH"
    assert config.serve.sweep_every.total_seconds() == 10


def test_the_python_example_compiles() -> None:
    for code in blocks("python"):
        compile(code, "docs/slack.md", "exec")


def test_the_manifest_asks_for_the_scopes_the_code_uses() -> None:
    manifest = yaml.safe_load((DOCS / "slack-app-manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "usergroups:read"} <= scopes
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")
