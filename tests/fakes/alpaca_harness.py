"""Wiring for Alpaca tests: keys, settings with tiny timeouts, and the emulator served next to the adapter,
a runtime, or an MCP server built the way `catalyst-mcp serve` builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.brokers.alpaca import AlpacaBroker, open_alpaca
from catalyst_mcp.brokers.alpaca_data import AlpacaMarketData
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.profiles import US_PROFILE
from catalyst_mcp.ports import Clock
from tests.fakes.alpaca_emulator import AlpacaEmulator, serve

KEY_ID = "PKEMULATOR7Q2ZK4"
SECRET = "sk-emulator-Zq9w3x7Lk2Vb8Nn1"  # distinctive, so tests can search every output for it


# The adapter's tuning, small enough that fault tests finish in well under a second.
FAST = {
    "alpaca_timeout_seconds": 2.0,
    "alpaca_read_retries": 0,
    "alpaca_retry_backoff_seconds": 0.01,
    "alpaca_cancel_wait_seconds": 2.0,
    "alpaca_max_threads": 8,
}


def alpaca_settings(url: str, database_url: str | None = None, **extra: Any) -> Settings:
    return Settings(
        database_url=SecretStr(database_url) if database_url else None,
        agent_id="test_agent",
        broker="alpaca",
        alpaca_url=url,
        alpaca_data_url=url,
        APCA_API_KEY_ID=KEY_ID,
        APCA_API_SECRET_KEY=SECRET,
        **{**FAST, **extra},
    )


@dataclass
class Adapter:
    emulator: AlpacaEmulator
    broker: AlpacaBroker
    data: AlpacaMarketData
    url: str = ""


@asynccontextmanager
async def alpaca_adapter(clock: Clock, **extra: Any) -> AsyncIterator[Adapter]:
    """The emulator and the adapter pointed at it (no database)."""
    emulator = AlpacaEmulator(clock, key_id=KEY_ID, secret_key=SECRET)
    async with serve(emulator) as url, open_alpaca(alpaca_settings(url, **extra), US_PROFILE, clock) as (b, d):
        yield Adapter(emulator, cast(AlpacaBroker, b), cast(AlpacaMarketData, d), url)


@asynccontextmanager
async def another_adapter(first: Adapter, clock: Clock, **extra: Any) -> AsyncIterator[AlpacaBroker]:
    """A second adapter on the same emulator, as another server process would have it (nothing shared)."""
    async with open_alpaca(alpaca_settings(first.url, **extra), US_PROFILE, clock) as (broker, _):
        yield cast(AlpacaBroker, broker)


@asynccontextmanager
async def alpaca_runtime(
    database_url: str, clock: Clock, **extra: Any
) -> AsyncIterator[tuple[AlpacaEmulator, Runtime]]:
    """The emulator and a runtime opened by `open_runtime` with CATALYST_BROKER=alpaca pointed at it."""
    emulator = AlpacaEmulator(clock, key_id=KEY_ID, secret_key=SECRET)
    async with serve(emulator) as url, open_runtime(alpaca_settings(url, database_url, **extra), clock=clock) as rt:
        yield emulator, rt
