"""What the services work with: the settings, the market's profile and clock, the database pool, the market's
execution lane, and the broker and market data ports. Built by ``catalyst_mcp.bootstrap``; services never know
which adapters stand behind it."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from catalyst_mcp.config import Settings
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.store.lane import Lane


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    profile: MarketProfile
    broker: Broker
    market_data: MarketData
    clock: Clock
    lane: Lane
