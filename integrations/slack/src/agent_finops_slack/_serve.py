"""Running the approver service: HTTP through waitress (a production WSGI server) or Socket Mode.

`agent-finops serve --config slack.yaml` builds everything from the config file, checks the
bot token (`auth.test`), starts the sweep, and serves until SIGTERM or Ctrl-C; then it stops
taking clicks, lets running decisions and resumes finish, and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from agent_finops.approvals import ApprovalService, ResumeTargets
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import DEFAULT_URL, SQLLedger
from agent_finops_slack._channel import SlackChannel
from agent_finops_slack._client import web_client
from agent_finops_slack._config import ServiceConfig, load_config
from agent_finops_slack._service import SlackApprover

__all__ = ["Service", "build_service", "run_service"]

log = logging.getLogger("agent_finops.slack")

ENV_URL: Final = "AGENT_FINOPS_DB_URL"
ENV_TARGETS: Final = "AGENT_FINOPS_RESUME_TARGETS"


@dataclass
class Service:
    """Everything `agent-finops serve` runs, built from the config."""

    config: ServiceConfig
    ledger: SQLLedger
    approver: SlackApprover
    mode: str
    app_token: str | None

    def close(self) -> None:
        """Stop the approver, then the ledger."""
        try:
            self.approver.close()
        finally:
            self.ledger.close()


def build_service(
    config_path: str | Path,
    *,
    db: str | None = None,
    targets: str | None = None,
    mode: str | None = None,
) -> Service:
    """Validate the config, read the secrets, open the ledger and build the Bolt app."""
    path = Path(config_path)
    config = load_config(path)
    source = str(path)
    base = path.resolve().parent
    settings = config.approval_settings(base=base)
    spec = targets or config.targets or os.environ.get(ENV_TARGETS)
    if not spec:
        raise ConfigurationError(
            "the approver service needs your app's resume targets",
            source=source,
            field="targets",
            expected=f"module:attr or file.py:attr (or --targets, or ${ENV_TARGETS})",
        )
    resume_targets = ResumeTargets.load(_relative_file(spec, base))
    mode = mode or config.serve.mode
    token = config.secret(config.slack.token_env, what="the Slack bot token")
    signing_secret = None
    app_token = None
    if mode == "http":
        signing_secret = config.secret(
            config.slack.signing_secret_env, what="the Slack signing secret (HTTP mode)"
        )
    else:
        app_token = config.secret(
            config.slack.app_token_env, what="the Slack app-level token (Socket Mode)"
        )
    url = db or config.ledger or os.environ.get(ENV_URL) or DEFAULT_URL
    ledger = SQLLedger.from_url(url)
    try:
        client = web_client(
            token, base_url=config.slack.base_url, max_retry_wait=config.slack.max_retry_wait
        )
        channel = SlackChannel(ledger, client=client, settings=config.slack, background=False)
        approvals = ApprovalService.from_settings(ledger, settings, channels=[channel])
        approver = SlackApprover(
            approvals=approvals,
            channel=channel,
            targets=resume_targets,
            signing_secret=signing_secret,
            workers=config.serve.workers,
            recover_after=config.serve.recover_after,
        )
    except BaseException:
        ledger.close()
        raise
    return Service(config, ledger, approver, mode, app_token)


def _relative_file(spec: str, base: Path) -> str:
    """`file.py:attr` relative to the config file's folder, when it is there."""
    module, sep, attr = spec.rpartition(":")
    if sep and module.endswith(".py") and not Path(module).is_absolute():
        candidate = base / module
        if candidate.exists() and not Path(module).exists():
            return f"{candidate}:{attr}"
    return spec


def run_service(
    service: Service,
    *,
    host: str | None = None,
    port: int | None = None,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    say = announce or (lambda text: print(text, flush=True))
    serve = service.config.serve
    service.approver.start_sweeping(serve.sweep_every)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("agent-finops serve: signal %d, stopping", signum)
        stop.set()
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if service.mode == "socket":
            _run_socket(service, stop, say)
        else:
            _run_http(service, host or serve.host, serve.port if port is None else port, say)
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        service.close()
        say("agent-finops serve: stopped")
    return 0


def _run_http(service: Service, host: str, port: int, say: Callable[[str], None]) -> None:
    import waitress

    serve = service.config.serve
    server: Any = waitress.create_server(
        service.approver.wsgi(serve.path),
        host=host,
        port=port,
        threads=serve.threads,
        ident="agent-finops",
        clear_untrusted_proxy_headers=True,
    )
    say(
        f"agent-finops serve: listening on http://{server.effective_host}:"
        f"{server.effective_port}{serve.path} (ledger {service.ledger.engine.url!r})"
    )
    server.run()


def _run_socket(service: Service, stop: threading.Event, say: Callable[[str], None]) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler: Any = SocketModeHandler(service.approver.app, app_token=service.app_token)
    handler.connect()
    say(f"agent-finops serve: connected in Socket Mode (ledger {service.ledger.engine.url!r})")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        handler.close()


def configure_logging(level: str = "INFO") -> None:
    """One line per event on stderr (the service's log)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
