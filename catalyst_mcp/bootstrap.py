"""The composition root: from the settings, the store (a migrated pool, the order lane), the exchange calendar,
the broker and its market data — the only module that knows which adapters exist. Everything it opens is
closed on exit."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import asyncpg

from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerKind
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.markets.profiles import profile_for
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store.calendar_cache import warm_calendar
from catalyst_mcp.store.embedded import default_data_dir, ensure_embedded_postgres
from catalyst_mcp.store.lane import Lane
from catalyst_mcp.store.migrate import apply_migrations, connect, create_pool


async def database_uri(settings: Settings) -> str:
    """CATALYST_DATABASE_URL when set, else the embedded PostgreSQL under the data dir."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    data_dir = settings.data_dir or default_data_dir()
    return await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)


@asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A migrated connection pool."""
    async with open_store(settings) as (pool, _):
        yield pool


@asynccontextmanager
async def open_store(settings: Settings, *, max_size: int = 10) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A migrated connection pool, and the URI it connects to (for connections outside it)."""
    uri = await database_uri(settings)
    try:
        pool = await create_pool(uri, max_size=max_size)
    except (OSError, asyncpg.PostgresError) as exc:
        raise OperatorNeeded(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from None
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        yield pool, uri
    finally:
        await pool.close()


@asynccontextmanager
async def open_runtime(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Open the store and the adapters named by the settings; close them on exit."""
    wall = clock or SystemClock()
    profile = profile_for(settings.market)
    cache_dir = (settings.data_dir or default_data_dir()) / "cache"
    await anyio.to_thread.run_sync(warm_calendar, profile, cache_dir)
    async with open_store(settings) as (pool, uri), AsyncExitStack() as stack:
        lane = Lane(profile.market, functools.partial(connect, uri), wait_seconds=settings.lane_wait_seconds)
        stack.push_async_callback(lane.close)
        broker: Broker
        market_data: MarketData
        if settings.broker is BrokerKind.ALPACA:
            from catalyst_mcp.brokers.alpaca_lazy import open_alpaca_lazily

            broker, market_data = await stack.enter_async_context(open_alpaca_lazily(settings, profile, wall))
        else:
            # The simulated exchange is a venue of its own: its own small pool, never the request pool.
            sim_pool = await create_pool(uri, min_size=1, max_size=4)
            stack.push_async_callback(sim_pool.close)
            broker = market_data = SimExchange(
                sim_pool,
                profile,
                seed=settings.sim_seed,
                starting_cash=settings.sim_starting_cash,
                wall_clock=wall,
                follow_wall=settings.sim_clock == "wall",
            )
        yield Runtime(settings, pool, profile, broker, market_data, wall, lane)
