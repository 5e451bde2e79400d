"""Test doubles: a local Slack Web API emulator and signed interaction payloads.

`SlackEmulator` answers the Web API methods agent-finops uses (`auth.test`,
`chat.postMessage`, `chat.update`, `chat.postEphemeral`, `usergroups.users.list`, and
`apps.connections.open` with a local Socket Mode WebSocket) on 127.0.0.1, records every call,
and fails on request: `ratelimited` with `Retry-After`, `channel_not_found`, `token_revoked`
or any error code. Point the real `slack_sdk.WebClient` at `emulator.base_url`.

`block_actions(...)` builds a button click as Slack sends it and `post_interaction(...)`
POSTs it signed (Slack's `v0` HMAC-SHA256 scheme) to an HTTP endpoint, so tests go through
Bolt's own signature verification.

```python
with SlackEmulator(channels={"C0APPROVALS"}) as slack:
    client = WebClient(token=slack.bot_token, base_url=slack.base_url)
    ...
    slack.fail("chat.postMessage", "channel_not_found")
    slack.rate_limit("chat.update", retry_after=1)
```
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "BOT_TOKEN",
    "SIGNING_SECRET",
    "ApiCall",
    "Message",
    "SlackEmulator",
    "block_actions",
    "post_interaction",
    "sign",
    "wait_for",
]

BOT_TOKEN: Final = "xoxb-emulator-bot-token"
APP_TOKEN: Final = "xapp-emulator-app-token"
SIGNING_SECRET: Final = "emulator-signing-secret"
TEAM_ID: Final = "T0EMULATOR"
BOT_USER: Final = "U0FINOPSBOT"


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API call the emulator received."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float
    answer: dict[str, Any]
    """What the emulator answered (`ok`, `error`, ...)."""
    status: int = 200


@dataclass(slots=True)
class _Fault:
    error: str
    times: int
    status: int = 200
    retry_after: int | None = None


@dataclass(slots=True)
class Message:
    """A message as the emulator holds it, with every version it had."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    versions: list[dict[str, Any]] = field(default_factory=list)


class SlackEmulator:
    """A local Slack Web API (and Socket Mode server) for tests. Thread-safe."""

    def __init__(
        self,
        *,
        channels: Iterable[str] = ("C0APPROVALS",),
        groups: Mapping[str, Iterable[str]] | None = None,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        socket_mode: bool = False,
    ) -> None:
        """Accept `bot_token`; `channels` exist; `groups` maps user group ids to members."""
        self.bot_token = bot_token
        self.app_token = app_token
        self.channels = set(channels)
        self.groups = {g: list(m) for g, m in (groups or {}).items()}
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._revoked: set[str] = set()
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._changed = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._socket: _SocketModeServer | None = _SocketModeServer() if socket_mode else None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving (also done by `with`)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        if self._socket is not None:
            self._socket.stop()

    def __enter__(self) -> Self:
        """Start, and stop on exit."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    @property
    def base_url(self) -> str:
        """The Web API base URL, for `WebClient(base_url=...)` (ends with `/`)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    # -- faults -----------------------------------------------------------------------------

    def fail(self, method: str, error: str, *, times: int = 1, status: int = 200) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        with self._lock:
            self._faults.setdefault(method, deque()).append(_Fault(error, times, status))

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and `Retry-After`."""
        with self._lock:
            self._faults.setdefault(method, deque()).append(
                _Fault("ratelimited", times, 429, retry_after)
            )

    def revoke(self, token: str | None = None) -> None:
        """Every later call with this token (default: the bot token) gets `token_revoked`."""
        with self._lock:
            self._revoked.add(token or self.bot_token)

    def clear_faults(self) -> None:
        """Forget injected faults and revocations."""
        with self._lock:
            self._faults.clear()
            self._revoked.clear()

    # -- what happened ----------------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[ApiCall]:
        """Calls of one method (only successful ones with `ok=True`, failed with `False`)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == method and (ok is None or bool(c.answer.get("ok")) == ok)
            ]

    def ephemerals(self, user: str | None = None) -> list[str]:
        """Texts of ephemeral replies (to `user`, if given) that were delivered."""
        return [
            str(c.params.get("text", ""))
            for c in self.calls_to("chat.postEphemeral", ok=True)
            if user is None or c.params.get("user") == user
        ]

    def message(self, channel: str, ts: str) -> Message:
        """The message at (channel, ts)."""
        with self._lock:
            return self.messages[(channel, ts)]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait (bounded) until `predicate()` holds after some call; its last value."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.05))

    # -- Socket Mode ------------------------------------------------------------------------

    def send_interactive(self, payload: Mapping[str, Any], *, timeout: float = 10.0) -> float:
        """Send a Socket Mode `interactive` envelope; seconds until the app acknowledged it."""
        if self._socket is None:
            raise RuntimeError("start the emulator with socket_mode=True")
        return self._socket.send(
            {"type": "interactive", "payload": dict(payload), "accepts_response_payload": True},
            timeout=timeout,
        )

    def socket_connected(self, timeout: float = 10.0) -> bool:
        """Wait until a Socket Mode client connected."""
        if self._socket is None:
            return False
        return self._socket.connected.wait(timeout)

    # -- the API ----------------------------------------------------------------------------

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            fault = self._take_fault(method)
            revoked = token in self._revoked
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return fault.status, {"ok": False, "error": fault.error}, headers
        if method == "apps.connections.open":
            if token != self.app_token or self._socket is None:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": self._socket.url}, {}
        if revoked:
            return 200, {"ok": False, "error": "token_revoked"}, {}
        if token != self.bot_token:
            return 200, {"ok": False, "error": "not_authed" if not token else "invalid_auth"}, {}
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        answer: dict[str, Any] = handler(params)
        return 200, answer, {}

    def _take_fault(self, method: str) -> _Fault | None:
        faults = self._faults.get(method)
        if not faults:
            return None
        fault = faults[0]
        fault.times -= 1
        if fault.times <= 0:
            faults.popleft()
        return fault

    def _record(self, call: ApiCall) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def _api_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://emulator.slack.test/",
            "team": "Emulator",
            "user": "agent-finops",
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": "B0FINOPS",
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        blocks = _blocks(params.get("blocks"))
        message = Message(channel, ts, str(params.get("text") or ""), blocks)
        message.versions.append({"text": message.text, "blocks": blocks})
        with self._lock:
            self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": message.text}}

    def _api_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (str(params.get("channel") or ""), str(params.get("ts") or ""))
        with self._lock:
            message = self.messages.get(key)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.text = str(params.get("text") or "")
            message.blocks = _blocks(params.get("blocks"))
            message.versions.append({"text": message.text, "blocks": message.blocks})
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message.text}

    def _api_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if str(params.get("channel") or "") not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}

    def _api_usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.groups[group])}


def _blocks(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [b for b in value or [] if isinstance(b, dict)]


def _handler_for(emulator: SlackEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            method = path.rsplit("/", 1)[-1]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            params: dict[str, Any] = dict(parse_qsl(query))
            if raw:
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    with contextlib.suppress(ValueError):
                        params.update(json.loads(raw))
                else:
                    params.update(parse_qsl(raw))
            auth = self.headers.get("Authorization") or ""
            token = auth[7:] if auth.startswith("Bearer ") else params.pop("token", None)
            status, answer, headers = emulator._answer(method, params, token)
            emulator._record(ApiCall(method, params, token, time.time(), answer, status))
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


class _SocketModeServer:
    """A WebSocket endpoint speaking Slack's Socket Mode envelopes (needs `websockets`)."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.connected = threading.Event()
        self._conn: Any = None
        self._acks: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket={uuid.uuid4().hex}"

    def _handle(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn
        conn.send(json.dumps({"type": "hello", "num_connections": 1, "debug_info": {}}))
        self.connected.set()
        try:
            for raw in conn:
                try:
                    data = json.loads(raw)
                except ValueError:
                    continue
                envelope = data.get("envelope_id") if isinstance(data, dict) else None
                with self._lock:
                    event = self._acks.get(str(envelope))
                if event is not None:
                    event.set()
        except Exception:  # the client went away
            pass
        finally:
            self.connected.clear()

    def send(self, envelope: dict[str, Any], *, timeout: float) -> float:
        envelope_id = uuid.uuid4().hex
        event = threading.Event()
        with self._lock:
            self._acks[envelope_id] = event
            conn = self._conn
        if conn is None:
            raise RuntimeError("no Socket Mode client is connected")
        started = time.monotonic()
        conn.send(json.dumps({**envelope, "envelope_id": envelope_id}))
        if not event.wait(timeout):
            raise TimeoutError(f"no ack for envelope {envelope_id} within {timeout}s")
        return time.monotonic() - started

    def stop(self) -> None:
        self._server.shutdown()


# -- interactions ------------------------------------------------------------------------


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a signed request (`v0` HMAC-SHA256 of `v0:ts:body`)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def block_actions(
    approval_id: str,
    *,
    user: str,
    action_id: str = "finops_approve",
    channel: str = "C0APPROVALS",
    message_ts: str = "1.000001",
    trigger_id: str | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """A `block_actions` payload as Slack sends it when `user` clicks one of our buttons."""
    now = f"{time.time():.6f}"
    return {
        "type": "block_actions",
        "user": {"id": user, "username": username or user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0FINOPS",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:12]}",
        "team": {"id": TEAM_ID, "domain": "emulator"},
        "channel": {"id": channel, "name": "approvals"},
        "message": {"type": "message", "ts": message_ts, "text": "approval"},
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "finops_decision",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": approval_id,
                "action_ts": now,
            }
        ],
    }


def post_interaction(
    url: str,
    payload: Mapping[str, Any] | None = None,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, str, float]:
    """POST an interaction signed with `secret`: (HTTP status, body, seconds to answer).

    `body` replaces the form-encoded payload (for malformed requests); `headers` replace
    the signature headers (for forged ones).
    """
    text = body if body is not None else urlencode({"payload": json.dumps(payload)})
    sent = {"Content-Type": "application/x-www-form-urlencoded"}
    sent.update(headers if headers is not None else sign(secret, text, timestamp))
    request = urllib.request.Request(url, data=text.encode(), headers=sent, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), time.monotonic() - started


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass (a bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
