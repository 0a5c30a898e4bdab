"""Wiring for Moomoo tests: an HK session clock, settings with small timeouts, and the OpenD emulator (in its
own thread) next to the adapter, a runtime opened by `open_runtime`, or nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.brokers.moomoo import MoomooBroker, open_moomoo
from catalyst_mcp.brokers.moomoo_data import MoomooMarketData
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.markets.profiles import HK_PROFILE
from catalyst_mcp.ports import Clock
from tests.fakes.opend_emulator import OpenDEmulator, running_opend

# Wednesday 25 Nov 2026, 10:00 in Hong Kong: the morning session.
HK_SESSION = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
TRADE_PASSWORD = "868686-emulator-pw"  # distinctive, so tests can search every output for it

# The adapter's tuning, small enough that fault tests finish in a few seconds.
FAST: dict[str, Any] = {
    "timeout_seconds": 2.0,
    "read_retries": 0,
    "retry_backoff_seconds": 0.01,
    "cancel_wait_seconds": 2.0,
    "fill_wait_seconds": 0.5,
}


def hk_clock() -> FixedClock:
    return FixedClock(HK_SESSION)


def moomoo_settings(port: int, database_url: str | None = None, *, host: str = "127.0.0.1", **extra: Any) -> Settings:
    moomoo = {"host": host, "port": port, **FAST, **extra.pop("moomoo", {})}
    return Settings(
        database_url=SecretStr(database_url) if database_url else None,
        agent_id="test_agent",
        broker="moomoo",
        market="HK",
        moomoo=moomoo,
        **extra,
    )


@contextmanager
def opend(clock: Clock, **kwargs: Any) -> Iterator[OpenDEmulator]:
    with running_opend(OpenDEmulator(clock, trade_password=TRADE_PASSWORD, **kwargs)) as emulator:
        yield emulator


@dataclass
class Adapter:
    emulator: OpenDEmulator
    broker: MoomooBroker
    data: MoomooMarketData


@asynccontextmanager
async def moomoo_adapter(clock: Clock, **extra: Any) -> AsyncIterator[Adapter]:
    """The emulator and the adapter pointed at it (no database)."""
    with opend(clock) as emulator:
        async with open_moomoo(moomoo_settings(emulator.port, **extra), HK_PROFILE, clock) as (broker, data):
            yield Adapter(emulator, cast(MoomooBroker, broker), cast(MoomooMarketData, data))


@asynccontextmanager
async def moomoo_runtime(database_url: str, clock: Clock, **extra: Any) -> AsyncIterator[tuple[OpenDEmulator, Runtime]]:
    """The emulator and a runtime opened by `open_runtime` with CATALYST_BROKER=moomoo pointed at it."""
    with opend(clock) as emulator:
        async with open_runtime(moomoo_settings(emulator.port, database_url, **extra), clock=clock) as rt:
            yield emulator, rt
