"""The MCP server: thin tools over the services, strict argument validation, resources, transports."""

from catalyst_mcp.server.app import build_server

__all__ = ["build_server"]
