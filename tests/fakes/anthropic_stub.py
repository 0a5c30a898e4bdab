"""A local stand-in for the Anthropic Messages API (``POST /v1/messages``), for tests through the real SDK.

Standard library only: an ``http.server`` in a thread. It answers each request with the next step of a script
— a reply (content blocks, ``stop_reason``, ``usage`` as the API reports them), an API error (429, 529, 500 …
with the API's error body), or a function of the request that returns either — and records every request so a
test can read the system prompt, the tools offered, the ``cache_control`` breakpoints and the tool results the
agent sent back. Requests the real API would refuse (roles out of turn, a ``tool_use`` left without its
``tool_result``, more than four cache breakpoints, no credentials) get the API's 400 or 401 instead.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_CACHE_BREAKPOINTS = 4


@dataclass(frozen=True)
class Reply:
    """A model response. ``stop_reason`` defaults to ``tool_use`` when a block is a tool_use, else
    ``end_turn``; ``usage`` entries override the stub's own counts."""

    content: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiError:
    """An error answer, as the API shapes it: ``{"type": "error", "error": {"type", "message"}}``."""

    status: int
    kind: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


def overloaded() -> ApiError:
    return ApiError(529, "overloaded_error", "Overloaded")


def rate_limited(retry_after: float = 1) -> ApiError:
    return ApiError(
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
        {"retry-after": str(retry_after)},
    )


def server_error() -> ApiError:
    return ApiError(500, "api_error", "Internal server error")


_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{next(_ids):024x}", "name": name, "input": dict(arguments or {})}


@dataclass(frozen=True)
class Request:
    """One request the agent sent: its headers (lower-case names) and JSON body."""

    headers: Mapping[str, str]
    body: dict[str, Any]

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, str):
            return system
        return "\n".join(block.get("text", "") for block in system)

    @property
    def tool_names(self) -> list[str]:
        return [tool["name"] for tool in self.body.get("tools", [])]

    def tool(self, name: str) -> dict[str, Any]:
        [found] = [t for t in self.body.get("tools", []) if t["name"] == name]
        return dict(found)

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the newest user turn, each with ``name`` (its tool_use's tool) added."""
        messages = self.body["messages"]
        names = {
            block["id"]: block["name"]
            for message in messages
            if message["role"] == "assistant" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_use"
        }
        last = messages[-1]
        if last["role"] != "user" or isinstance(last["content"], str):
            return []
        return [
            {**block, "name": names.get(block["tool_use_id"])}
            for block in last["content"]
            if block.get("type") == "tool_result"
        ]

    def result(self, name: str) -> Any:
        """The newest result of tool ``name`` in this request, parsed from JSON when it is JSON."""
        found = [r for r in self.tool_results() if r["name"] == name]
        assert found, f"no tool_result for {name} in the last user turn: {self.tool_results()}"
        content = found[-1]["content"]
        if isinstance(content, list):
            content = "".join(block.get("text", "") for block in content)
        try:
            return json.loads(content)
        except (TypeError, ValueError):
            return content

    def cache_breakpoints(self) -> list[str]:
        """Where the request puts ``cache_control``: ``tools:NAME``, ``system:N``, ``messages:I:J``."""
        marks = [f"tools:{t['name']}" for t in self.body.get("tools", []) if t.get("cache_control")]
        system = self.body.get("system")
        if isinstance(system, list):
            marks += [f"system:{i}" for i, block in enumerate(system) if block.get("cache_control")]
        for i, message in enumerate(self.body.get("messages", [])):
            if isinstance(message["content"], list):
                marks += [f"messages:{i}:{j}" for j, b in enumerate(message["content"]) if b.get("cache_control")]
        return marks


Step = Reply | ApiError | Callable[[Request], "Reply | ApiError"]


class AnthropicStub:
    """The stub server. Use as a context manager (``with AnthropicStub(script) as stub: stub.url``)."""

    def __init__(self, script: Iterable[Step] = ()) -> None:
        self._script: list[Step] = list(script)
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.served = 0
        # Exceptions raised by scripted steps (a failed assertion about a request): the test checks this is
        # empty, since the agent only sees them as an API error.
        self.failures: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="anthropic-stub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    def __enter__(self) -> AnthropicStub:
        self._thread.start()
        return self

    def check(self) -> None:
        """Fail when a scripted step raised (its assertion would otherwise only look like an API error)."""
        assert not self.failures, self.failures

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- answering ---------------------------------------------------------------------------------------------

    def _next(self, request: Request) -> Reply | ApiError:
        with self._lock:
            self.requests.append(request)
            if not self._script:
                return ApiError(500, "api_error", "the stub's script has no step left for this request")
            step = self._script.pop(0)
            self.served += 1
        if not callable(step):
            return step
        try:
            return step(request)
        except Exception as exc:  # reported to the test, answered as the API's own failure
            self.failures.append(f"step {self.served}: {type(exc).__name__}: {exc}")
            return ApiError(500, "api_error", f"the stub's step failed: {type(exc).__name__}")

    def answer(self, headers: Mapping[str, str], raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        if not (headers.get("x-api-key") or headers.get("authorization", "").startswith("Bearer ")):
            return _error(ApiError(401, "authentication_error", "invalid x-api-key"))
        if not headers.get("anthropic-version"):
            return _error(ApiError(400, "invalid_request_error", "anthropic-version: header is required"))
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(ApiError(400, "invalid_request_error", "the body is not JSON"))
        problem = _invalid(body)
        if problem is not None:
            return _error(ApiError(400, "invalid_request_error", problem))
        step = self._next(Request(headers, body))
        if isinstance(step, ApiError):
            return _error(step)
        return 200, {"request-id": f"req_{next(_ids):024x}"}, self._message(body, step)

    def _message(self, body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
        uses = any(block.get("type") == "tool_use" for block in reply.content)
        first = self.served == 1
        usage: dict[str, Any] = {
            "input_tokens": 40 + 10 * len(body["messages"]),
            "output_tokens": 25 * max(1, len(reply.content)),
            "cache_creation_input_tokens": 1200 if first else 0,
            "cache_read_input_tokens": 0 if first else 1200,
            "cache_creation": {"ephemeral_5m_input_tokens": 1200 if first else 0, "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard",
        }
        usage.update(reply.usage)
        if "cache_creation_input_tokens" in reply.usage:
            usage["cache_creation"]["ephemeral_5m_input_tokens"] = reply.usage["cache_creation_input_tokens"]
        return {
            "id": f"msg_{next(_ids):024x}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": reply.content,
            "stop_reason": reply.stop_reason or ("tool_use" if uses else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path.split("?")[0] != "/v1/messages":
                    status, headers, payload = _error(ApiError(404, "not_found_error", f"no route {self.path}"))
                else:
                    lowered = {k.lower(): v for k, v in self.headers.items()}
                    status, headers, payload = stub.answer(lowered, raw)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _error(error: ApiError) -> tuple[int, dict[str, str], dict[str, Any]]:
    request_id = f"req_{next(_ids):024x}"
    body = {"type": "error", "error": {"type": error.kind, "message": error.message}, "request_id": request_id}
    return error.status, {"request-id": request_id, **error.headers}, body


def _invalid(body: Any) -> str | None:
    """What the real API would reject in this request body (the parts the agent builds), or None."""
    if not isinstance(body, dict):
        return "the body must be an object"
    for key, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        if not isinstance(body.get(key), kind):
            return f"{key}: Field required"
    messages = body["messages"]
    if not messages or messages[0].get("role") != "user":
        return "messages: the first message must use the user role"
    pending: set[str] = set()
    known: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if i and role == messages[i - 1].get("role"):
            return f"messages.{i}: roles must alternate between user and assistant"
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if role == "user":
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if pending - answered:
                return f"messages.{i}: tool_use ids were found without tool_result blocks: {sorted(pending - answered)}"
            if answered - known:
                return f"messages.{i}: unexpected tool_use_id in tool_result blocks: {sorted(answered - known)}"
            pending = set()
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            known |= pending
    names = [tool.get("name") for tool in body.get("tools", [])]
    if len(names) != len(set(names)):
        return "tools: tool names must be unique"
    for tool in body.get("tools", []):
        if (tool.get("input_schema") or {}).get("type") != "object":
            return f"tools.{tool.get('name')}.input_schema.type: Input should be 'object'"
    marks = Request({}, body).cache_breakpoints()
    if len(marks) > MAX_CACHE_BREAKPOINTS:
        return f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marks)}."
    return None


@contextmanager
def running(script: Iterable[Step] = ()) -> Iterator[AnthropicStub]:
    with AnthropicStub(script) as stub:
        yield stub
