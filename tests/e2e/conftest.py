"""End-to-end fixtures: the real MCP client, in process, in both protocol eras."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client


@pytest.fixture(params=["auto", "legacy"], ids=["protocol-2026", "protocol-legacy"])
def protocol_mode(request: pytest.FixtureRequest) -> str:
    """`auto` speaks the 2026-07-28 protocol to an in-process server; `legacy` the 2025-11-25 handshake."""
    return str(request.param)


@pytest.fixture
async def client(server: Any, protocol_mode: str) -> AsyncIterator[Client]:
    async with Client(server, mode=protocol_mode) as c:  # type: ignore[arg-type]
        yield c
