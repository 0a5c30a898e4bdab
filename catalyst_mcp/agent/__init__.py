"""The trading agent: an MCP client of the Catalyst server, with pluggable policies."""
