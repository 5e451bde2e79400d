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
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_quick_start_snippet_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (snippet,) = python_blocks(README.read_text())
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
    namespace["tracker"].close()
