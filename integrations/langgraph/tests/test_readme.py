"""The README's quick-start snippet runs as written (against a scripted graph)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from agent_finops_langgraph.testing import ScriptedChatModel, usage

README = Path(__file__).resolve().parents[3] / "README.md"


def python_blocks(text: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if "agent_finops_crewai" not in b]  # run by the CrewAI tests


def test_quick_start_snippet_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    snippet, policy_snippet = python_blocks(README.read_text())
    llm = ScriptedChatModel(script=[AIMessage("hello", usage_metadata=usage(100, 10))])
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda s: {"messages": [llm.invoke(s["messages"])]})
    builder.add_edge(START, "agent")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {
        "graph": builder.compile(),
        "inputs": {"messages": [HumanMessage("hi")]},
    }
    exec(compile(snippet, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "agent [node]" in out
    assert "task=ticket-42" in out and "team=support" in out
    assert (tmp_path / "agent-finops.sqlite").exists()

    # The policy snippet, continuing in the same namespace.
    (tmp_path / "policy.yaml").write_text(
        "budgets:\n  - {id: run-cap, limit: '0.0000001', period: run}\n"
    )
    policy_builder = StateGraph(MessagesState)
    namespace["builder"] = policy_builder
    namespace["researcher"] = lambda s: {"messages": [llm.invoke(s["messages"])]}
    exec(compile(policy_snippet, str(README), "exec"), namespace)
    policy_builder.add_edge(START, "researcher")
    out = policy_builder.compile().invoke(
        {"messages": [HumanMessage("hi")]}, config={"callbacks": [namespace["handler"]]}
    )
    assert out["__interrupt__"][0].value["rule_id"] == "run-cap"
    namespace["tracker"].close()
