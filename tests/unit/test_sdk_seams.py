"""The two private accesses of the MCP SDK (``server/sdk.py``) against the installed SDK: when a release
renames or removes either, these fail before a client finds out."""

from __future__ import annotations

from typing import Any

from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp_types import SubscribeRequestParams

from catalyst_mcp.server.sdk import connection_of, lowlevel_of


def test_the_low_level_server_under_an_mcp_server_takes_a_request_handler() -> None:
    server: MCPServer[Any] = MCPServer("seam")
    lowlevel = lowlevel_of(server)
    assert isinstance(lowlevel, Server)

    async def handler(_ctx: Any, _params: SubscribeRequestParams) -> None:
        return None

    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, handler)
    assert lowlevel.get_request_handler("resources/subscribe") is not None


def test_a_request_session_leads_to_its_client_connection() -> None:
    connection = Connection(object(), protocol_version="2025-11-25")  # type: ignore[arg-type]
    session = ServerSession(object(), connection)  # type: ignore[arg-type]
    assert connection_of(session) is connection
    assert callable(connection.send_resource_updated) and connection.exit_stack is not None
