"""Logging to stderr only: stdout belongs to the MCP protocol when serving over stdio."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # Request-level chatter from the HTTP stack and pgserver's command echo are noise at INFO.
    for noisy in ("httpx", "httpx2", "uvicorn.access", "mcp.server.streamable_http_manager", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
