"""A scripted Anthropic Messages API server on 127.0.0.1, for offline tests of the real SDK.

Stdlib only. `POST /v1/messages` answers with the next scripted usage, non-streamed or as
the SSE event sequence the SDK parses (`message_start` carrying input and cache usage,
`content_block_*`, `message_delta` carrying the output tokens, `message_stop`). Anthropic's
usage is additive: `input_tokens` excludes `cache_read_input_tokens` and
`cache_creation_input_tokens`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["AnthropicUsage", "FakeAnthropicServer"]


@dataclass(frozen=True, kw_only=True)
class AnthropicUsage:
    """One scripted reply's usage, in Anthropic's additive convention."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation: dict[str, int] | None = None
    """The lifetime breakdown of cache writes (`ephemeral_5m_input_tokens`,
    `ephemeral_1h_input_tokens`), sent as `usage.cache_creation` when given."""
    text: str = "Hello from the fake Anthropic API."
    model: str = "claude-sonnet-4-6"
    tool_use: tuple[str, dict[str, Any]] | None = None
    """`(name, input)`: answer with a `tool_use` block instead of text (non-streamed)."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        owner = self.server.owner
        if self.path == "/v1/messages/count_tokens":  # free token counting: no reply used
            with owner.lock:
                owner.count_requests.append(body)
            self._json(200, {"input_tokens": len(json.dumps(body.get("messages", []))) // 4})
            return
        with owner.lock:
            owner.requests.append(body)
            reply = owner.replies.popleft() if owner.replies else None
        if reply is None or self.path != "/v1/messages":
            self._json(
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "no scripted reply"},
                },
            )
            return
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
        if reply.tool_use is not None:
            name, arguments = reply.tool_use
            content = [{"type": "tool_use", "id": "toolu_fake", "name": name, "input": arguments}]
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": content,
            "stop_reason": "tool_use" if reply.tool_use is not None else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_read_input_tokens": reply.cache_read_input_tokens,
                "cache_creation_input_tokens": reply.cache_creation_input_tokens,
            },
        }
        if reply.cache_creation is not None:
            message["usage"]["cache_creation"] = dict(reply.cache_creation)
        if not body.get("stream"):
            self._json(200, message)
            return
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**message["usage"], "output_tokens": 1},
        }
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": reply.text},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FakeAnthropicServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class FakeAnthropicServer:
    """Context manager: `with FakeAnthropicServer([AnthropicUsage(...)]) as srv: srv.base_url`."""

    def __init__(self, replies: list[AnthropicUsage]) -> None:
        self.replies: deque[AnthropicUsage] = deque(replies)
        self.requests: list[dict[str, Any]] = []
        self.count_requests: list[dict[str, Any]] = []
        """Bodies of `POST /v1/messages/count_tokens` (answered without using a reply)."""
        self.lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """Where to point `anthropic.Anthropic(base_url=...)`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
