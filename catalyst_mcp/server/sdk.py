"""The two places where the MCP SDK offers no public way to do what the server needs. Each private access is
here, once, and ``tests/unit/test_sdk_seams.py`` fails when the SDK changes it."""

from __future__ import annotations

from typing import Any

from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession


def lowlevel_of(server: MCPServer[Any]) -> Server[Any]:
    """The low-level server under ``server``. MCPServer serves only the 2026 ``subscriptions/listen``; the
    legacy ``resources/subscribe`` pair (which the 2026 revision removed) can only be added there, which is
    also what advertises ``resources.subscribe`` to legacy clients."""
    lowlevel: Server[Any] = server._lowlevel_server
    return lowlevel


def connection_of(session: ServerSession) -> Connection:
    """The client connection behind a request's session. The session is a per-request proxy; its connection
    outlives the request and owns the standalone stream legacy notifications travel on (and the teardown
    stack a subscription is dropped with)."""
    return session._connection
