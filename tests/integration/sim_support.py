"""Helpers shared by the simulated exchange's tests: intents, the exchange as a second process sees it, and
a few reads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.domain.enums import OrderType, Side
from catalyst_mcp.domain.models import BrokerOrder, OrderIntent
from catalyst_mcp.markets.clocks import FixedClock

D = Decimal
CENT = D("0.01")


def second_exchange(pool: asyncpg.Pool, runtime: Runtime, clock: FixedClock) -> SimExchange:
    """The simulated broker as another server process sees it: its own pool and exchange object."""
    return SimExchange(
        pool, runtime.profile, seed=runtime.settings.sim_seed, starting_cash=D(100_000), wall_clock=clock
    )


def buy(symbol: str, qty: str, **kw: Any) -> OrderIntent:
    return OrderIntent(symbol, Side.BUY, D(qty), kw.pop("order_type", OrderType.MARKET), **kw)


def sell(symbol: str, qty: str, **kw: Any) -> OrderIntent:
    return OrderIntent(symbol, Side.SELL, D(qty), kw.pop("order_type", OrderType.MARKET), **kw)


async def ask(sim: SimExchange, symbol: str) -> Decimal:
    quote = await sim.get_quote(symbol)
    assert quote is not None
    return quote.ask


async def resting_buy(sim: SimExchange, symbol: str, qty: str, coid: str) -> BrokerOrder:
    """A limit buy 10 % under the ask: it rests."""
    limit = (await ask(sim, symbol) * D("0.9")).quantize(CENT)
    return await sim.submit_order(buy(symbol, qty, order_type=OrderType.LIMIT, limit_price=limit), coid)


async def order(sim: SimExchange, coid: str) -> BrokerOrder:
    found = await sim.get_order_by_client_id(coid)
    assert found is not None, coid
    return found


async def count_orders(runtime: Runtime) -> int:
    async with runtime.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM sim.orders"))


async def bracket(sim: SimExchange, coid: str, symbol: str = "AAPL", qty: str = "10", **kw: Any) -> BrokerOrder:
    """A bracket buy with its stop 5 % below and its take profit 5 % above the ask."""
    price = await ask(sim, symbol)
    return await sim.submit_order(
        buy(
            symbol,
            qty,
            stop_loss=(price * D("0.95")).quantize(CENT),
            take_profit=(price * D("1.05")).quantize(CENT),
            **kw,
        ),
        coid,
    )
