r"""A graph pauses over budget, someone clicks Approve in Slack, and the run completes.

    python examples/slack_approval.py            # a local Slack emulator clicks for you
    SLACK_BOT_TOKEN=xoxb-... SLACK_SIGNING_SECRET=... SLACK_CHANNEL=C0123 \
        python examples/slack_approval.py        # real Slack: you click (see docs/slack.md)

What happens: this script starts the approver service (`agent-finops serve`, a separate
process, as in production), runs a three-node graph whose run cap pauses the second call,
and the pause is posted to Slack with Approve / Deny buttons. With the emulator, a signed
click on "Approve, raise cap by $1" is sent to the service; with real Slack you click it
(HTTP needs the service reachable at your app's Request URL; with SLACK_APP_TOKEN set it uses
Socket Mode instead). The service decides, updates the message in place and resumes the
graph from its SQLite checkpoint in its own process; this script waits for the run to finish
and prints its cost report.

The service imports this file for `targets` (its resume function): everything the graph
needs comes from the environment this script sets.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

from agent_finops import CostTracker, SQLLedger
from agent_finops.approvals import ApprovalService, ResumeRequest, ResumeTargets
from agent_finops.policy import Policy
from agent_finops_langgraph import FinOpsCallbackHandler, guard_node
from agent_finops_langgraph.testing import ScriptedChatModel, usage
from agent_finops_slack import SlackChannel, SlackSettings

TAGS = {"team": "search", "agent": "researcher", "task": "ticket-42"}
POLICY = {
    "budgets": [{"id": "run-cap", "limit": "0.0003", "period": "run", "action": "pause"}],
    "approvals": {"approvers": [{"allow": [os.environ.get("SLACK_APPROVER", "*")]}]},
}
RAISE = Decimal(1)
"""The "Approve, raise cap by $1" button."""


def settings() -> SlackSettings:
    """Where requests go: the demo's channel, through the emulator unless real Slack is set."""
    return SlackSettings(
        default_channel=os.environ.get("SLACK_CHANNEL", "C0APPROVALS"),
        base_url=os.environ.get("SLACK_API_URL") or None,
        raise_options=(RAISE,),
    )


def build() -> tuple[Any, FinOpsCallbackHandler, SlackChannel, sqlite3.Connection]:
    """The graph, its handler (with the Slack channel) and its checkpointer."""
    ledger = SQLLedger.from_url(os.environ["AGENT_FINOPS_DB_URL"])
    tracker = CostTracker(ledger, tags=TAGS)
    policy = Policy.from_mapping(POLICY)
    slack = SlackChannel.from_env(ledger, settings(), flush=tracker.flush)
    approvals = ApprovalService.from_settings(ledger, policy.approvals, channels=[slack])
    handler = FinOpsCallbackHandler(
        tracker, policy=policy, approvals=approvals, resume_target="slack-demo"
    )
    llm = ScriptedChatModel(script=[AIMessage("step", usage_metadata=usage(1000, 100))])

    def work(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

    builder = StateGraph(MessagesState)
    for name in ("plan", "search", "answer"):
        builder.add_node(name, guard_node(work, handler))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "search")
    builder.add_edge("search", "answer")
    conn = sqlite3.connect(os.environ["SLACK_DEMO_CHECKPOINTS"], check_same_thread=False)
    return builder.compile(checkpointer=SqliteSaver(conn)), handler, slack, conn


def config(handler: FinOpsCallbackHandler, thread_id: str) -> Any:
    return {
        "callbacks": [handler],
        "configurable": {"thread_id": thread_id},
        "metadata": {"finops": dict(TAGS)},
    }


def pause(thread_id: str) -> str:
    """Run until the cost policy pauses the run; the approval id it waits for."""
    graph, handler, slack, conn = build()
    try:
        out = graph.invoke({"messages": [HumanMessage("find it")]}, config(handler, thread_id))
    finally:
        handler.guard.close()  # flushes the tracker
        slack.close()  # waits for the message to be posted
        conn.close()
        handler.tracker.ledger.close()
    (interrupt,) = out["__interrupt__"]
    return str(interrupt.value["approval_id"])


def resume(request: ResumeRequest) -> str:
    """What the approver service runs after a click: resume this request's interrupt."""
    graph, handler, slack, conn = build()
    try:
        cfg = config(handler, request.thread_id)
        waiting = [
            i.id
            for i in graph.get_state(cfg).interrupts
            if i.value.get("approval_id") == request.answer["approval_id"]
        ]
        if not waiting:
            return "nothing to resume"
        out = graph.invoke(Command(resume={waiting[0]: request.answer}), cfg)
        return f"messages={len(out['messages'])} interrupted={'__interrupt__' in out}"
    finally:
        handler.guard.close()
        slack.close()
        conn.close()
        handler.tracker.ledger.close()


targets = ResumeTargets({"slack-demo": resume})
"""`agent-finops serve --targets examples/slack_approval.py:targets`."""


def main() -> int:
    """Start the service, pause a run, click (or wait for you), print the report."""
    real = bool(os.environ.get("SLACK_BOT_TOKEN") and os.environ.get("SLACK_SIGNING_SECRET"))
    workdir = Path(tempfile.mkdtemp(prefix="slack-demo-"))
    emulator = None
    if not real:
        from agent_finops_slack.testing import SIGNING_SECRET, SlackEmulator

        emulator = SlackEmulator(channels={"C0APPROVALS"}).start()
        os.environ.update(
            SLACK_BOT_TOKEN=emulator.bot_token,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=emulator.base_url,
        )
    os.environ.update(
        AGENT_FINOPS_DB_URL=f"sqlite:///{workdir}/ledger.sqlite",
        SLACK_DEMO_CHECKPOINTS=str(workdir / "checkpoints.sqlite"),
    )
    socket_mode = real and bool(os.environ.get("SLACK_APP_TOKEN"))
    slack_config: dict[str, Any] = {
        "default_channel": settings().default_channel,
        "raise_options": [str(RAISE)],
    }
    if not real:
        slack_config["base_url"] = os.environ["SLACK_API_URL"]
    service_config = {
        "targets": f"{Path(__file__).resolve()}:targets",
        "approvals": POLICY["approvals"],
        "slack": slack_config,
        "serve": {
            "mode": "socket" if socket_mode else "http",
            "port": int(os.environ.get("PORT", "3000")) if real else 0,
            "sweep_every": 1,
        },
    }
    config_path = workdir / "slack.yaml"
    config_path.write_text(yaml.safe_dump(service_config))
    cli = str(Path(sys.executable).with_name("agent-finops"))
    server = subprocess.Popen(
        [cli, "serve", "--config", str(config_path), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().strip()  # "listening on URL" / "connected ..."
        print(ready)
        url = ready.rsplit("listening on ", 1)[-1].split(" ", 1)[0]
        approval_id = pause("demo-thread")
        print(f"paused: approval {approval_id} is waiting in Slack")
        if emulator is not None:
            click_approve(emulator, url, approval_id)
        else:
            print("click 'Approve, raise cap by $1' in Slack (Ctrl-C to give up)")
        return wait_and_report(approval_id)
    finally:
        server.terminate()
        server.wait(timeout=60)
        if emulator is not None:
            emulator.stop()


def click_approve(emulator: Any, url: str, approval_id: str) -> None:
    """What Slack does when someone clicks: a signed block_actions POST."""
    from agent_finops_slack.testing import block_actions, post_interaction

    (message,) = emulator.messages.values()
    print(f"Slack message: {message.text}")
    payload = block_actions(
        approval_id,
        user="U0DEMO",
        action_id=f"finops_approve_raise:{RAISE}",
        channel=message.channel,
        message_ts=message.ts,
    )
    status, _, seconds = post_interaction(url, payload)
    print(f"clicked Approve (+$1) as <@U0DEMO>: HTTP {status}, acked in {seconds * 1000:.0f} ms")
    deadline = time.monotonic() + 30
    while "Approved by" not in message.text and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"message now: {message.text}")


def wait_and_report(approval_id: str, timeout: float = 600) -> int:
    """Wait until the resumed run finished; print its report."""
    from agent_finops.reports import load_run_report

    deadline = time.monotonic() + timeout
    with SQLLedger.from_url(os.environ["AGENT_FINOPS_DB_URL"]) as ledger:
        while time.monotonic() < deadline:
            runs = ledger.list_runs()
            done = [s for s in runs if s.run.status in ("ok", "stopped")]
            if done:
                request = ledger.get_approval(approval_id)
                assert request is not None
                status = done[0].run.status
                print(f"{request.status} by {request.decided_by}; the resumed run is {status}")
                total = sum((s.cost for s in runs), Decimal(0))
                print(f"total cost of the thread: ${total} over {len(runs)} invocations")
                print(load_run_report(ledger, done[0].run.trace_id).render())
                return 0
            time.sleep(0.1)
    print("timed out waiting for the decision", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
