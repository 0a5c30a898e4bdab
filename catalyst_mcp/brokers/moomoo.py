"""Moomoo (Futu OpenD) behind the Broker port, through the official futu-api SDK, for HK securities.

Paper (``TrdEnv.SIMULATE``) unless live is asked for twice; live trading is unlocked with the trade password
from the environment. Futu has no client order id: the deterministic id travels in the order's ``remark``
(returned with every order), an order is looked up by it before it is placed (so an id is never placed twice)
and after an ambiguous submit. Orders are whole board lots and limit prices are on the price spread, both
from the latest snapshot, checked before anything is sent. Fills come from each order's cumulative filled
quantity and average price (paper trading has no fill list), as queries and OpenD's pushes report them; a
market order's answer waits briefly for the push of its fill, a cancel for the push of its end. Futu has no
bracket or one-cancels-other orders (and paper trading no stop orders): protective legs are not placed at
the broker, the position monitor guards the stop loss and take profit the book holds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import anyio

from catalyst_mcp.brokers import moomoo_mapping as wire
from catalyst_mcp.brokers.moomoo_config import MoomooConfig, config_for
from catalyst_mcp.brokers.moomoo_data import MoomooMarketData, _rows
from catalyst_mcp.brokers.moomoo_sdk import Link, OrderFeed, SdkCalls, load_futu, open_context, password_md5
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, OrderIntent
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData

log = logging.getLogger("catalyst_mcp.brokers.moomoo")
HISTORY_DAYS: Final = 7  # how far back a lookup by client order id reads past days' orders


class MoomooBroker:
    """A Moomoo HK securities account (paper or live) through OpenD."""

    name = "moomoo"

    def __init__(
        self,
        link: Link,
        calls: SdkCalls,
        data: MoomooMarketData,
        feed: OrderFeed,
        *,
        config: MoomooConfig,
        clock: Clock,
    ) -> None:
        self._link = link
        self._calls = calls
        self._data = data
        self._feed = feed
        self._config = config
        self._env = "REAL" if config.mode is BrokerMode.LIVE else "SIMULATE"
        self._clock = clock

    @property
    def mode(self) -> BrokerMode:
        return self._config.mode

    # --- account --------------------------------------------------------------------------------------

    async def get_account(self) -> Account:
        rows = await self._calls.read(
            "funds", self._link, lambda ctx: _rows(ctx.accinfo_query(trd_env=self._env, currency="HKD"))
        )
        if not rows:
            raise TemporaryFailure("OpenD sent no funds for the account")
        return wire.account(rows[0])

    async def get_positions(self) -> list[BrokerPosition]:
        rows = await self._calls.read(
            "positions", self._link, lambda ctx: _rows(ctx.position_list_query(trd_env=self._env))
        )
        return [p for p in (wire.position(r) for r in rows) if p is not None]

    async def verify(self) -> None:
        """Fail on an account OpenD refuses to serve (locked, a wrong password); OpenD not there only warns."""
        try:
            await self.get_account()
        except TemporaryFailure as exc:
            log.warning("moomoo: could not read the account at start-up: %s", exc)
        except BrokerRejected as exc:
            raise OperatorNeeded(f"OpenD did not serve the {self._env} HK account: {exc}") from None

    # --- orders ---------------------------------------------------------------------------------------

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        remark = wire.remark(client_order_id)
        symbol = wire.canonical(intent.symbol)
        code = wire.futu_code(symbol)
        existing = await self._today_by_remark(remark)
        if existing is not None:
            log.warning("moomoo: %s is already at OpenD as order %s; not placed again", remark,
                        existing.broker_order_id)  # fmt: skip
            return existing
        snap = await self._data.instrument(symbol, fresh=intent.order_type is OrderType.LIMIT)
        if snap is None:
            raise BrokerRejected(f"OpenD does not know {symbol}; nothing was sent")
        wire.check_lot(symbol, intent.quantity, snap.lot)
        limit = Decimal(0)
        if intent.order_type is OrderType.LIMIT:
            if intent.limit_price is None:
                raise InvalidInput("a limit order needs a limit price")
            limit = intent.limit_price
            wire.check_spread(symbol, limit, snap.spread)
        if intent.stop_loss is not None or intent.take_profit is not None:
            log.info("moomoo: %s goes out alone: its stop loss %s and take profit %s are guarded by the monitor",
                     remark, intent.stop_loss, intent.take_profit)  # fmt: skip
        log.info("moomoo: submit %s %s %s %s %s (%s)", remark, intent.side.value, intent.quantity, symbol,
                 intent.order_type.value, self._env)  # fmt: skip

        def place(ctx: Any) -> tuple[int, Any]:
            return _rows(
                ctx.place_order(
                    price=wire.wire(limit),
                    qty=wire.wire(intent.quantity),
                    code=code,
                    trd_side="BUY" if intent.side is Side.BUY else "SELL",
                    order_type="NORMAL" if intent.order_type is OrderType.LIMIT else "MARKET",
                    trd_env=self._env,
                    remark=remark,
                    time_in_force="DAY",
                )
            )

        rows = await self._calls.once("the order", self._link, place)
        order_id = str(rows[0].get("order_id", "")) if rows else ""
        if not order_id:
            raise TemporaryFailure(f"OpenD accepted {remark} without an order id")
        row = rows[0] if wire.symbol_of(rows[0].get("code")) else await self._row_by_id(order_id)
        if row is None:
            raise TemporaryFailure(f"OpenD placed {remark} as order {order_id} but does not list it yet")
        if intent.order_type is OrderType.MARKET and not wire.is_final(row) and self._config.tuning.fill_wait > 0:
            pushed = await self._feed.wait(order_id, wire.is_final, self._config.tuning.fill_wait)
            row = wire.newer(row, pushed) if pushed is not None else row
        return wire.broker_order(row, self._clock.now())

    async def protect(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        client_order_id: str,
    ) -> list[BrokerOrder]:
        raise BrokerRejected(
            "Moomoo holds no protective orders here (no brackets or one-cancels-other, no paper stops): "
            f"the position monitor guards {symbol} at its stop loss and take profit"
        )

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """Today's orders first, then the last days' (Futu keeps the remark with the order)."""
        found = await self._today_by_remark(client_order_id)
        if found is not None:
            return found
        now = self._clock.now().astimezone(wire.HKT)
        start = f"{now - timedelta(days=HISTORY_DAYS):%Y-%m-%d %H:%M:%S}"
        end = f"{now:%Y-%m-%d %H:%M:%S}"
        rows = await self._calls.read(
            "past orders",
            self._link,
            lambda ctx: _rows(ctx.history_order_list_query(start=start, end=end, trd_env=self._env)),
        )
        return self._by_remark(rows, client_order_id)

    async def _today_by_remark(self, client_order_id: str) -> BrokerOrder | None:
        rows = await self._calls.read("orders", self._link, lambda ctx: _rows(ctx.order_list_query(trd_env=self._env)))
        return self._by_remark(rows, client_order_id)

    def _by_remark(self, rows: list[wire.Row], client_order_id: str) -> BrokerOrder | None:
        mine = [r for r in rows if str(r.get("remark") or "") == client_order_id]
        if not mine:
            return None
        if len(mine) > 1:
            log.error("moomoo: %d orders carry the remark %s; the first is taken", len(mine), client_order_id)
        first = min(mine, key=lambda r: str(r.get("create_time", "")))
        pushed = self._feed.latest(str(first.get("order_id")))
        return wire.broker_order(wire.newer(first, pushed) if pushed else first, self._clock.now())

    async def _row_by_id(self, order_id: str) -> wire.Row | None:
        rows = await self._calls.read(
            "order", self._link, lambda ctx: _rows(ctx.order_list_query(order_id=order_id, trd_env=self._env))
        )
        found = [r for r in rows if str(r.get("order_id")) == order_id]
        return found[0] if found else None

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        wanted = wire.canonical(symbol) if symbol else None
        code = wire.futu_code(wanted) if wanted else ""
        rows = await self._calls.read(
            "open orders",
            self._link,
            lambda ctx: _rows(
                ctx.order_list_query(code=code, status_filter_list=list(wire.WORKING_STATUSES), trd_env=self._env)
            ),
        )
        now = self._clock.now()
        orders = [wire.broker_order(r, now) for r in rows if wire.symbol_of(r.get("code"))]
        return [o for o in orders if o.status.is_open and (wanted is None or o.symbol == wanted)]

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder:
        """Cancel and await the order's end: the answer, else its push, else one more look."""
        if not broker_order_id or len(broker_order_id) > 64:
            raise InvalidInput(f"unknown broker order {broker_order_id[:64]!r}")

        def cancel(ctx: Any) -> tuple[int, Any]:
            answer = ctx.modify_order("CANCEL", broker_order_id, 0, 0, trd_env=self._env)
            return answer[0], answer[1]

        try:
            await self._calls.once("the cancel", self._link, cancel)
        except BrokerRejected:
            row = await self._row_by_id(broker_order_id)
            if row is None:
                raise InvalidInput(f"unknown broker order {broker_order_id}") from None
            if wire.is_final(row):
                return wire.broker_order(row, self._clock.now())  # it had ended (filled or cancelled) first
            raise
        row = await self._row_by_id(broker_order_id)
        if row is None or not wire.is_final(row):
            pushed = await self._feed.wait(broker_order_id, wire.is_final, self._config.tuning.cancel_wait)
            row = pushed if pushed is not None else await self._row_by_id(broker_order_id)
        if row is None or not wire.is_final(row):
            raise TemporaryFailure(
                f"the cancel of order {broker_order_id} was not confirmed within {self._config.tuning.cancel_wait:g} s"
            )
        return wire.broker_order(row, self._clock.now())

    # --- clock ----------------------------------------------------------------------------------------

    async def is_market_open(self) -> bool:
        """OpenD says: the HK morning or afternoon session (the lunch break and the auctions are closed to
        paper orders)."""
        return (await self._data.market_state()).state in wire.OPEN_STATES

    async def now(self) -> datetime:
        """Real time, as OpenD counts it (an offset learnt from its global state)."""
        return self._clock.now() + self._data.clock_offset()


@dataclass(frozen=True, slots=True)
class Opened:
    """The adapter's two halves over their SDK contexts; ``close`` ends the contexts."""

    broker: MoomooBroker
    market_data: MoomooMarketData
    links: tuple[Link, Link]

    def close(self) -> None:
        for link in self.links:
            link.close()


def build_moomoo(settings: Settings, profile: MarketProfile, clock: Clock) -> Opened:
    """The SDK loaded (tamed) and the adapter for `settings`; contexts open on first use. Blocking."""
    config = config_for(settings, profile)
    futu = load_futu()
    tuning = config.tuning
    calls = SdkCalls(tuning, config.secrets)
    feed = OrderFeed()

    def open_trade() -> Any:
        ctx = open_context(futu, "trade", config.host, config.port, tuning.timeout)
        ctx.set_handler(feed.handler(futu))
        if config.mode is BrokerMode.LIVE:
            ret, message = ctx.unlock_trade(password_md5=password_md5(config.password))
            if ret != 0:
                ctx.close()
                raise OperatorNeeded(f"OpenD refused to unlock live trading: {wire.one_line(str(message))}")
        return ctx

    trade = Link("trade", open_trade)
    quote = Link("quote", lambda: open_context(futu, "quote", config.host, config.port, tuning.timeout))
    data = MoomooMarketData(quote, calls, clock)
    broker = MoomooBroker(trade, calls, data, feed, config=config, clock=clock)
    return Opened(broker, data, (trade, quote))


@asynccontextmanager
async def open_moomoo(
    settings: Settings, profile: MarketProfile, clock: Clock
) -> AsyncIterator[tuple[Broker, MarketData]]:
    """The Moomoo broker and market data for `settings`, checked with one funds request; fails with one line if
    they cannot be used. (A server opens them lazily instead: ``moomoo_lazy.open_moomoo_lazily``.)"""
    opened = await anyio.to_thread.run_sync(build_moomoo, settings, profile, clock)
    try:
        await opened.broker.verify()
        yield opened.broker, opened.market_data
    finally:
        await anyio.to_thread.run_sync(opened.close)
