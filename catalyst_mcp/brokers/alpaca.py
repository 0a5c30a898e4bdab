"""Alpaca behind the Broker and MarketData ports (arrives with its issue)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData


@asynccontextmanager
async def open_alpaca(
    settings: Settings, profile: MarketProfile, clock: Clock
) -> AsyncIterator[tuple[Broker, MarketData]]:
    raise OperatorNeeded("the Alpaca broker is not available yet; use CATALYST_BROKER=sim")
    yield  # pragma: no cover
