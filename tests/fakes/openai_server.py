"""A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, for offline end-to-end tests.

Stdlib only. It answers `POST /v1/chat/completions` (and `/chat/completions`) from a queue of
`ScriptedReply`s, non-streamed or as Server-Sent Events, with the usage fields OpenAI sends
(`prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`), and
records every request it receives so tests can assert on what the client sent:

```python
with FakeOpenAIServer([ScriptedReply(content="hi", prompt_tokens=10, completion_tokens=2)]) as srv:
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=srv.base_url, api_key="test")
    llm.invoke("hello")
    assert srv.requests[0].body["model"] == "gpt-4o-mini"
```

Streams follow OpenAI's wire format: a role chunk, content or tool-call deltas, a chunk with
the `finish_reason`, then (only when the request had `stream_options.include_usage`) a final
chunk with `choices: []` and the usage, then `data: [DONE]`. An empty queue answers HTTP 400
with an OpenAI-style error body, so a test that makes one call too many fails at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["FakeOpenAIServer", "RecordedRequest", "ScriptedReply", "ScriptedToolCall"]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
"""What OpenAI reports as the served model for `gpt-4o-mini`."""
STREAM_PIECE_CHARS = 8
"""Content and tool-call arguments are streamed in pieces of at most this many characters."""


@dataclass(frozen=True, kw_only=True)
class ScriptedToolCall:
    """One function tool call the scripted model asks for."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str = "call_1"


@dataclass(frozen=True, kw_only=True)
class ScriptedReply:
    """One scripted completion: its text or tool calls, served model and usage."""

    content: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    model: str = DEFAULT_MODEL
    """Served model name, as OpenAI reports it (a dated snapshot)."""
    prompt_tokens: int = 0
    """All input tokens, cached ones included (OpenAI's inclusive convention)."""
    completion_tokens: int = 0
    """All output tokens, reasoning ones included."""
    cached_tokens: int = 0
    """`usage.prompt_tokens_details.cached_tokens`."""
    reasoning_tokens: int = 0
    """`usage.completion_tokens_details.reasoning_tokens`."""
    service_tier: str = "default"
    """`service_tier` of the response (`default`, `flex`, `priority`)."""

    @property
    def finish_reason(self) -> str:
        """`tool_calls` when the reply calls tools, else `stop`."""
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> dict[str, Any]:
        """The `usage` object exactly as OpenAI's Chat Completions API shapes it."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def tool_calls_json(self) -> list[dict[str, Any]]:
        """The message's `tool_calls` (arguments as a JSON string, as OpenAI sends them)."""
        return [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in self.tool_calls
        ]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    """The parsed JSON body (`{}` when it was empty or not JSON)."""


def _pieces(text: str) -> Iterator[str]:
    for start in range(0, len(text), STREAM_PIECE_CHARS):
        yield text[start : start + STREAM_PIECE_CHARS]


def completion_json(reply: ScriptedReply, completion_id: str, created: int) -> dict[str, Any]:
    """A non-streamed `chat.completion` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": (reply.content or None) if reply.tool_calls else reply.content,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls_json()
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": reply.usage(),
        "service_tier": reply.service_tier,
        "system_fingerprint": "fp_fake",
    }


def stream_chunks(
    reply: ScriptedReply, completion_id: str, created: int, *, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """The `chat.completion.chunk` objects of one streamed completion, in order."""
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": reply.model,
        "service_tier": reply.service_tier,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        base["usage"] = None  # OpenAI sends `"usage": null` on every chunk but the last

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice]}

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in _pieces(reply.content):
        yield chunk({"content": piece})
    for index, call in enumerate(reply.tool_calls_json()):
        head = {"name": call["function"]["name"], "arguments": ""}
        start = {"index": index, "id": call["id"], "type": "function", "function": head}
        yield chunk({"tool_calls": [start]})
        for piece in _pieces(call["function"]["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, reply.finish_reason)
    if include_usage:
        yield {**base, "choices": [], "usage": reply.usage()}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 for chunked SSE, but every response closes its connection: LangChain caches
    # its httpx clients across event loops, and a pooled keep-alive socket bound to a closed
    # test loop surfaces later as a ResourceWarning (an error under filterwarnings=error).
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet (the default writes every request to stderr)."""

    def do_POST(self) -> None:
        """Answer a chat completion from the script."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        self.server.owner._record(
            RecordedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if path not in CHAT_PATHS:
            self._send_error(404, f"no route {path!r} on the fake OpenAI server", "not_found")
            return
        reply = self.server.owner._next_reply()
        if reply is None:
            self._send_error(400, "fake OpenAI server: no scripted reply left", "script_exhausted")
            return
        completion_id = f"chatcmpl-fake{self.server.owner._next_id()}"
        created = int(time.time())
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage"))
            chunks = stream_chunks(reply, completion_id, created, include_usage=include_usage)
            self._send_stream(chunks)
        else:
            self._send_json(200, completion_json(reply, completion_id, created))

    def do_GET(self) -> None:
        """Only chat completions are served."""
        self._send_error(404, f"no route {self.path!r} on the fake OpenAI server", "not_found")

    def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.send_header("x-request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, code: str) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        self._send_json(status, {"error": error})

    def _send_stream(self, chunks: Iterable[Mapping[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.send_header("x-request-id", "req_fake")
        self.end_headers()
        for payload in chunks:
            self._write_chunk(f"data: {json.dumps(payload)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FakeOpenAIServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class FakeOpenAIServer:
    """A scripted OpenAI-compatible server in a daemon thread; a context manager.

    Thread-safe: replies are taken and requests recorded under a lock, so concurrent
    (threaded or async) clients each get exactly one scripted reply.
    """

    def __init__(self, replies: Iterable[ScriptedReply] = ()) -> None:
        """Prepare a server that will answer with `replies`, in order (call `start()`)."""
        self._lock = threading.Lock()
        self._replies: deque[ScriptedReply] = deque(replies)
        self._requests: list[RecordedRequest] = []
        self._ids = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is None:
            self._httpd = _Server(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-openai-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.close()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>/v1`, for `ChatOpenAI(base_url=)` or `OpenAI(base_url=)`."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; call start() or use `with`")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # -- script and records ----------------------------------------------------------------

    def enqueue(self, *replies: ScriptedReply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not served yet."""
        with self._lock:
            return len(self._replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of chat-completion requests received so far, oldest first."""
        return [r.body for r in self.requests if r.path in CHAT_PATHS]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self) -> ScriptedReply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids
