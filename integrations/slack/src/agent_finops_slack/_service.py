"""`SlackApprover`: the Bolt app behind `agent-finops serve`, its resumer and its sweep.

A click arrives signed (Bolt's own `RequestVerification`: HMAC-SHA256 `v0` signature over
the timestamp and body, 5-minute window), is checked against the store of interactions
already seen (a replay or a Slack retry is acknowledged and ignored), and is acknowledged at
once. After the ack, on a worker (a Bolt lazy listener): the approval is looked up by the
button's value, the Slack user is checked against the request's allow-list (user ids and
user groups), and `ApprovalService.decide` records the first decision atomically. Exactly
one click wins; everyone else is told, ephemerally, who decided. The winner's request is
resumed through the application's registered `ResumeTargets`, once (a durable claim), one
resume at a time per thread.

The sweep (every `serve.sweep_every`) expires due requests to their configured outcome and
resumes (stops) their runs, posts requests nobody posted, retries failed posts, refreshes
messages whose request was decided elsewhere (the console), and takes over resumes left
unfinished by a service that died.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from slack_bolt import Ack, App, BoltRequest, BoltResponse

from agent_finops.approvals import ApprovalService, ResumeTargets
from agent_finops.exceptions import AlreadyDecided, ApprovalNotFound, ApproverNotAllowed
from agent_finops.ledger import ApprovalRecord, ApprovalStatus
from agent_finops_slack._channel import SlackChannel
from agent_finops_slack._message import (
    APPROVE_ACTION,
    DENY_ACTION,
    RAISE_ACTION,
    amount,
    when,
    who,
)

__all__ = ["ACTION_PATTERN", "Resumer", "SlackApprover"]

log = logging.getLogger("agent_finops.slack")

ACTION_PATTERN: Final = re.compile(
    rf"^({re.escape(APPROVE_ACTION)}|{re.escape(DENY_ACTION)}|{re.escape(RAISE_ACTION)}:[0-9.]+)$"
)
"""The `action_id`s of our buttons."""
APPROVAL_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
SEEN_FOR: Final = timedelta(minutes=10)
"""Interactions are remembered this long (twice Slack's 5-minute signature window)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Resumer:
    """Resumes decided requests' runs: once each (a durable claim), one at a time per thread."""

    def __init__(
        self,
        approvals: ApprovalService,
        targets: ResumeTargets,
        channel: SlackChannel,
        *,
        workers: int = 4,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """Resume through `targets`; claims are kept in `channel`'s store."""
        self.approvals = approvals
        self.targets = targets
        self.store = channel.store
        self.owner = channel.owner
        self._clock = clock
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="agent-finops-resume")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._running = 0
        self._idle = threading.Condition()

    def submit(self, request: ApprovalRecord) -> bool:
        """Resume this decided request's run in the background; False if it is not ours to."""
        if not self.store.claim_resume(request.approval_id, owner=self.owner, now=self._clock()):
            return False  # resumed (or being resumed) already
        if not request.thread_id or not request.resume_target:
            log.warning(
                "agent-finops-slack: approval %s is %s but its run cannot be resumed from "
                "here (no thread id or no resume target: run the graph with a checkpointer "
                "and a thread id, and give the handler resume_target=...)",
                request.approval_id,
                request.status,
            )
            self.store.resume_finished(
                request.approval_id,
                now=self._clock(),
                error="not resumable: no thread id or target",
            )
            return False
        self._start(request.approval_id)
        return True

    def _start(self, approval_id: str) -> None:
        with self._idle:
            self._running += 1
        self._pool.submit(self._run, approval_id)

    def _run(self, approval_id: str) -> None:
        try:
            request = self.approvals.get(approval_id)
            with self._thread_lock(request.thread_id or approval_id):
                self._resume(self.approvals.get(approval_id))
        except Exception as exc:
            log.exception("agent-finops-slack: resuming approval %s failed", approval_id)
            self.store.resume_finished(approval_id, now=self._clock(), error=repr(exc))
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _resume(self, request: ApprovalRecord) -> None:
        if request.applied_at is not None:
            # The run took this decision up already (another branch's resume reached it).
            log.info(
                "agent-finops-slack: approval %s was already taken up by its run",
                request.approval_id,
            )
            self.store.resume_finished(request.approval_id, now=self._clock(), error=None)
            return
        log.info(
            "agent-finops-slack: resuming thread %s (approval %s %s by %s) through %r",
            request.thread_id,
            request.approval_id,
            request.status,
            request.decided_by,
            request.resume_target,
        )
        self.approvals.resume(request, self.targets)
        self.store.resume_finished(request.approval_id, now=self._clock(), error=None)
        log.info("agent-finops-slack: resumed thread %s", request.thread_id)

    def _thread_lock(self, thread_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(thread_id, threading.Lock())

    def recover(self, *, older_than: timedelta) -> int:
        """Take over resumes another service began more than `older_than` ago and never ended."""
        now = self._clock()
        taken = 0
        for approval_id, owner in self.store.abandoned_resumes(
            owner=self.owner, before=now - older_than
        ):
            if self.store.take_over_resume(approval_id, old_owner=owner, owner=self.owner, now=now):
                log.warning(
                    "agent-finops-slack: taking over the resume of approval %s (begun by %s, "
                    "never finished)",
                    approval_id,
                    owner,
                )
                self._start(approval_id)
                taken += 1
        return taken

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no resume is running or queued; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)

    def close(self) -> None:
        """Let running resumes finish; queued ones are taken over by the next service."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class SlackApprover:
    """Decides approval requests from Slack clicks and resumes the runs.

    ```python
    approver = SlackApprover(approvals=service, channel=slack, targets=targets,
                             signing_secret=os.environ["SLACK_SIGNING_SECRET"])
    wsgi_app = approver.wsgi()            # any WSGI server; `agent-finops serve` uses waitress
    ```
    """

    def __init__(
        self,
        *,
        approvals: ApprovalService,
        channel: SlackChannel,
        targets: ResumeTargets,
        signing_secret: str | None,
        workers: int = 4,
        recover_after: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = _utcnow,
        token_verification: bool = True,
    ) -> None:
        """Serve clicks on the requests of `approvals`' ledger.

        Args:
            approvals: decides (its channels should include `channel`, so messages update).
            channel: the Slack channel (its client answers users and updates messages).
            targets: the application's registered resume functions.
            signing_secret: Slack's signing secret (HTTP mode); None for Socket Mode only.
            workers: threads deciding clicks after the ack, and as many resuming runs.
            recover_after: take over a resume another service left unfinished this long.
            clock: returns the current aware datetime.
            token_verification: check the bot token with `auth.test` at start (Bolt's).
        """
        self.approvals = approvals
        self.channel = channel
        self.targets = targets
        self.settings = channel.settings
        self.store = channel.store
        self.recover_after = recover_after
        self._clock = clock
        self.resumer = Resumer(approvals, targets, channel, workers=workers, clock=clock)
        self._decide_pool = ThreadPoolExecutor(workers, thread_name_prefix="agent-finops-click")
        self.app = App(
            client=channel.client,
            signing_secret=signing_secret or "",
            request_verification_enabled=signing_secret is not None,
            process_before_response=True,  # ack on the request thread; work on the pool
            listener_executor=self._decide_pool,
            token_verification_enabled=token_verification,
            name="agent-finops-serve",
        )
        self.app.use(self._replay_guard)
        self.app.action(ACTION_PATTERN)(ack=_ack, lazy=[self._on_click])
        self._sweeping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._sweep_lock = threading.Lock()

    # -- interactions ---------------------------------------------------------------------

    def _replay_guard(
        self, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        key = interaction_key(req)
        if key is None or self.store.first_sight(key, now=self._clock()):
            return next()
        log.warning("agent-finops-slack: ignored a replayed interaction (%s)", key[:80])
        return BoltResponse(status=200, body="")

    def _on_click(self, body: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id")
        actions = body.get("actions") or []
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        if not isinstance(user, str) or not actions or not isinstance(actions[0], dict):
            log.warning("agent-finops-slack: ignored a malformed click (no user or action)")
            return
        action = actions[0]
        approval_id = action.get("value")
        action_id = str(action.get("action_id") or "")
        if not isinstance(approval_id, str) or not APPROVAL_ID.match(approval_id):
            self.channel.tell(channel, user, "That button does not name an approval request.")
            return
        try:
            approve, extra = self._meaning(action_id)
        except ValueError as exc:
            self.channel.tell(channel, user, f"{exc}; nothing was changed.")
            return
        name = (body.get("user") or {}).get("username") or (body.get("user") or {}).get("name")
        self.decide(approval_id, user, approve=approve, extra=extra, channel=channel, name=name)

    def _meaning(self, action_id: str) -> tuple[bool, Decimal | None]:
        if action_id == APPROVE_ACTION:
            return True, None
        if action_id == DENY_ACTION:
            return False, None
        text = action_id.partition(":")[2]
        try:
            extra = Decimal(text).normalize()
        except InvalidOperation:
            raise ValueError(f"{text!r} is not an amount") from None
        if extra not in self.settings.raise_options:
            raise ValueError(f"approving with {text} more is not offered")
        return True, extra

    def decide(
        self,
        approval_id: str,
        user: str,
        *,
        approve: bool,
        extra: Decimal | None = None,
        channel: str | None = None,
        name: str | None = None,
    ) -> ApprovalRecord | None:
        """Decide a request as Slack user `user`; answer them if it cannot be; resume if won."""
        try:
            request = self.approvals.get(approval_id)
            if request.approval_id != approval_id:  # a prefix: buttons carry whole ids
                raise ApprovalNotFound(f"no approval request {approval_id!r}", key=approval_id)
        except ApprovalNotFound:
            self.channel.tell(
                channel,
                user,
                f"There is no approval request `{approval_id}` in this ledger; "
                "nothing was changed.",
            )
            return None
        allowed = (
            request.approvers
            if request.approvers is not None
            else sorted(self.approvals.approvers.allowed_for(request.tags))
        )
        approver = self.channel.approver(user, allowed=allowed, name=name)
        try:
            decided = self.approvals.decide(approval_id, approve=approve, by=approver, extra=extra)
        except AlreadyDecided as exc:
            self.channel.tell(
                channel,
                user,
                f"Already {exc.status} by {who(exc.decided_by)} at {when(exc.decided_at)}; "
                "nothing was changed.",
            )
            self.channel.refresh(approval_id)  # make sure the message says so
            return None
        except ApproverNotAllowed:
            scope = ", ".join(f"{k}={v}" for k, v in request.scope.items()) or "all runs"
            self.channel.tell(
                channel,
                user,
                f"You are not on the approvers list for this request ({scope}); "
                "nothing was changed.",
            )
            return None
        log.info(
            "agent-finops-slack: approval %s %s by %s%s",
            approval_id,
            decided.status,
            approver.id,
            f" (extra {amount(decided.extra, decided.unit)})" if decided.extra is not None else "",
        )
        self.resumer.submit(decided)
        return decided

    # -- the sweep ------------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire due requests (and stop or resume their runs), catch up on Slack, recover."""
        if not self._sweep_lock.acquire(blocking=False):
            return  # the previous sweep is still running
        try:
            now = self._clock()
            for expired in self.approvals.expire_due(now):
                self.resumer.submit(expired)
            for request in self._expired_elsewhere():
                self.resumer.submit(request)
            self.channel.catch_up(now)
            self.resumer.recover(older_than=self.recover_after)
            self.store.forget_seen(now - SEEN_FOR)
        finally:
            self._sweep_lock.release()

    def _expired_elsewhere(self) -> list[ApprovalRecord]:
        """Requests another process expired (`agent-finops approvals list` sweeps too)."""
        found = [
            r
            for status in _EXPIRY_OUTCOMES
            for r in self.approvals.ledger.list_approvals(status=status, limit=200)
            if r.decided_by == "expiry" and r.applied_at is None
        ]
        return [r for r in found if self.store.resume_state(r.approval_id) is None]

    def start_sweeping(self, every: timedelta) -> None:
        """Sweep on a background thread every `every` (the first sweep right away)."""
        interval = every.total_seconds()

        def loop() -> None:
            while not self._sweeping.is_set():
                try:
                    self.sweep()
                except Exception:
                    log.exception("agent-finops-slack: the sweep failed; trying again later")
                self._sweeping.wait(interval)

        self._sweeper = threading.Thread(target=loop, name="agent-finops-sweep", daemon=True)
        self._sweeper.start()

    # -- serving --------------------------------------------------------------------------

    def wsgi(self, path: str = "/slack/events") -> Callable[..., Any]:
        """The WSGI application: Bolt's adapter at `path`, and `GET /healthz`."""
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        handler = SlackRequestHandler(self.app, path=path)

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok"]
            try:
                return handler(environ, start_response)
            except Exception as exc:  # a body Bolt cannot parse (it raises before answering)
                log.warning("agent-finops-slack: refused a malformed request: %s", exc)
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"malformed request"]

        return application

    def close(self) -> None:
        """Stop sweeping, finish deciding and resuming what is running, flush Slack work."""
        self._sweeping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=30)
        self._decide_pool.shutdown(wait=True)
        self.resumer.close()
        self.channel.close()


_EXPIRY_OUTCOMES: Final[tuple[ApprovalStatus, ...]] = ("expired", "approved")


def _ack(ack: Ack) -> None:
    ack()


def interaction_key(req: BoltRequest) -> str | None:
    """What identifies one delivery of an interaction (None: not an interaction)."""
    body = req.body if isinstance(req.body, dict) else {}
    kind = body.get("type")
    if kind is None:
        return None
    trigger = body.get("trigger_id")
    actions = body.get("actions") or []
    action_ts = actions[0].get("action_ts") if actions and isinstance(actions[0], dict) else None
    if isinstance(trigger, str) and trigger:
        return f"{kind}:{trigger}:{action_ts or ''}"
    raw = req.raw_body if isinstance(req.raw_body, str) else str(body)
    return f"{kind}:sha256:{hashlib.sha256(raw.encode()).hexdigest()}"
