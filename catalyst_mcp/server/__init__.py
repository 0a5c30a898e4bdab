"""The MCP server: thin tools over the services, strict argument validation, resources, transports.

``build_server`` is imported on first use: ``catalyst-mcp serve`` answers the handshake before the tools are
imported (``server/front.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalyst_mcp.server.app import build_server


def __getattr__(name: str) -> Any:
    if name == "build_server":
        from catalyst_mcp.server.app import build_server

        return build_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_server"]
