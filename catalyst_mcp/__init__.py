"""Catalyst MCP: an MCP server that lets AI agents trade equities safely."""

__version__ = "0.1.0"
