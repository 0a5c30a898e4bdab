"""A typed wrapper around an open `mcp.Client`: structured results in, one-line errors out."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from mcp import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, TextContent

from catalyst_mcp.domain.errors import CatalystError

_MAX_MESSAGE = 300


class ToolCallError(CatalystError):
    """A tool answered with `is_error=true` (or the request failed at the protocol level)."""

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        self.message = one_line(message) or "failed without a message"
        super().__init__(f"{tool}: {self.message}")


class ServerUnavailable(CatalystError):
    """The connection to the server is gone; no further call can succeed."""


class ToolCaller(Protocol):
    """The part of `mcp.Client` this wrapper needs (an open client satisfies it)."""

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolResult: ...


class ToolClient:
    """Calls tools by keyword arguments and returns their structured content."""

    def __init__(self, client: ToolCaller) -> None:
        self._client = client

    async def call(self, name: str, **arguments: object) -> dict[str, Any]:
        """Call `name`; `None` arguments are omitted, Decimals and enums sent as strings.

        Raises `ToolCallError` when the tool reports an error and `ServerUnavailable` when the
        connection has closed.
        """
        wire = {key: to_wire(value) for key, value in arguments.items() if value is not None}
        try:
            result = await self._client.call_tool(name, wire)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ServerUnavailable(f"connection to the server closed during {name}") from exc
            raise ToolCallError(name, exc.message) from exc
        if result.is_error:
            raise ToolCallError(name, error_text(result))
        content = result.structured_content
        if not isinstance(content, dict):
            raise ToolCallError(name, "the result carries no structured content")
        return content


def to_wire(value: object) -> object:
    """JSON-ready form of an argument: Decimals in plain notation, enums by value."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return value.value
    return value


def error_text(result: CallToolResult) -> str:
    """The text blocks of an error result, as one line."""
    return one_line(" ".join(block.text for block in result.content if isinstance(block, TextContent)))


def one_line(text: str) -> str:
    """Collapse whitespace (newlines included) and cap the length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + "…"


def describe_exception(exc: BaseException) -> str:
    """The first innermost exception of a (possibly grouped) failure, as one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# The model's credentials stay with the agent: the server it starts never needs them.
AGENT_ONLY_ENV = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})


def stdio_params(extra_env: Mapping[str, str]) -> StdioServerParameters:
    """Launch `python -m catalyst_mcp serve` with this process's environment (the model's credentials left
    out) plus `extra_env`."""
    env = {**{k: v for k, v in os.environ.items() if k not in AGENT_ONLY_ENV}, **extra_env}
    return StdioServerParameters(command=sys.executable, args=["-m", "catalyst_mcp", "serve"], env=env)
