"""Moomoo as a server opens it: the configuration checked and OpenD's port probed at start-up without the SDK,
and futu-api (with pandas: most of a second to import) loaded in a worker thread by the first call that needs
it, so a server answers the MCP handshake without it. OpenD not listening at start-up only warns: every call
then fails with one line until it listens."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio

from catalyst_mcp.brokers.moomoo_config import config_for
from catalyst_mcp.brokers.moomoo_sdk import check_port
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode, Market, Side
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, OrderIntent, Quote
from catalyst_mcp.markets.lots import table_lot
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow

if TYPE_CHECKING:
    from catalyst_mcp.brokers.moomoo import Opened

log = logging.getLogger("catalyst_mcp.brokers.moomoo")


class _Lazy:
    """Builds the SDK-backed adapter once, in a worker thread, on first use."""

    def __init__(self, settings: Settings, profile: MarketProfile, clock: Clock) -> None:
        self._args = (settings, profile, clock)
        self._lock = anyio.Lock()
        self.opened: Opened | None = None

    async def get(self) -> Opened:
        if self.opened is None:
            async with self._lock:
                if self.opened is None:
                    self.opened = await anyio.to_thread.run_sync(self._build)
        return self.opened

    def _build(self) -> Opened:
        from catalyst_mcp.brokers.moomoo import build_moomoo  # the SDK is imported here, off the event loop

        return build_moomoo(*self._args)


class LazyMoomooBroker:
    """The Moomoo broker, its SDK loaded by the first call."""

    name = "moomoo"

    def __init__(self, lazy: _Lazy, mode: BrokerMode) -> None:
        self._lazy = lazy
        self._mode = mode

    @property
    def mode(self) -> BrokerMode:
        return self._mode

    async def _broker(self) -> Broker:
        return (await self._lazy.get()).broker

    async def get_account(self) -> Account:
        return await (await self._broker()).get_account()

    async def get_positions(self) -> list[BrokerPosition]:
        return await (await self._broker()).get_positions()

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        return await (await self._broker()).submit_order(intent, client_order_id)

    async def protect(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        client_order_id: str,
    ) -> list[BrokerOrder]:
        broker = await self._broker()
        return await broker.protect(symbol, side, quantity, stop_loss, take_profit, client_order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return await (await self._broker()).get_order_by_client_id(client_order_id)

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        return await (await self._broker()).get_open_orders(symbol)

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder:
        return await (await self._broker()).cancel_order(broker_order_id)

    async def is_market_open(self) -> bool:
        return await (await self._broker()).is_market_open()

    async def now(self) -> datetime:
        return await (await self._broker()).now()


class LazyMoomooMarketData:
    """Moomoo's market data, its SDK loaded by the first call."""

    source = "moomoo"

    def __init__(self, lazy: _Lazy) -> None:
        self._lazy = lazy

    async def _data(self) -> MarketData:
        return (await self._lazy.get()).market_data

    async def get_quote(self, symbol: str) -> Quote | None:
        return await (await self._data()).get_quote(symbol)

    async def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return await (await self._data()).get_quotes(symbols)

    async def scan_rows(self, symbols: Sequence[str] | None = None) -> list[ScanRow]:
        return await (await self._data()).scan_rows(symbols)

    async def get_bars(self, symbol: str, size: BarSize, count: int) -> list[Bar]:
        return await (await self._data()).get_bars(symbol, size, count)

    def lot_size(self, symbol: str) -> Decimal:
        opened = self._lazy.opened
        return opened.market_data.lot_size(symbol) if opened is not None else table_lot(Market.HK, symbol)


@asynccontextmanager
async def open_moomoo_lazily(
    settings: Settings, profile: MarketProfile, clock: Clock
) -> AsyncIterator[tuple[Broker, MarketData]]:
    """The Moomoo broker and market data for a server: configuration checked and OpenD's port probed now, the
    SDK loaded on first use; its contexts are closed on exit."""
    config = config_for(settings, profile)
    if not await anyio.to_thread.run_sync(check_port, config.host, config.port, config.tuning.timeout):
        log.warning("moomoo: OpenD is not listening at %s; calls fail until it does", config.where)
    log.info("moomoo: %s trading through OpenD at %s", config.mode.value, config.where)
    lazy = _Lazy(settings, profile, clock)
    try:
        yield LazyMoomooBroker(lazy, config.mode), LazyMoomooMarketData(lazy)
    finally:
        if lazy.opened is not None:
            await anyio.to_thread.run_sync(lazy.opened.close)
