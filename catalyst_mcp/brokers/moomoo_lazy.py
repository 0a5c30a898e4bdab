"""Moomoo as a server opens it: the configuration checked and OpenD's port probed at start-up without the SDK,
and futu-api (with pandas: most of a second to import) loaded in a worker thread by the first call that needs
it, so a server answers the MCP handshake without it. OpenD not listening at start-up only warns: every call
then fails with one line until it listens."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio

from catalyst_mcp.brokers.lazy import LazyAdapter, LazyBroker, LazyMarketData
from catalyst_mcp.brokers.moomoo_config import config_for
from catalyst_mcp.brokers.moomoo_sdk import check_port
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.lots import table_lot
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData

if TYPE_CHECKING:
    from catalyst_mcp.brokers.moomoo import Opened

log = logging.getLogger("catalyst_mcp.brokers.moomoo")


def _build(settings: Settings, profile: MarketProfile, clock: Clock) -> Opened:
    from catalyst_mcp.brokers.moomoo import build_moomoo  # the SDK is imported here, off the event loop

    return build_moomoo(settings, profile, clock)


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
    lazy = LazyAdapter(functools.partial(_build, settings, profile, clock))

    def lot_size(symbol: str) -> Decimal:
        """OpenD's lot once the adapter is built; the maintained table before that."""
        opened = lazy.opened
        return opened.market_data.lot_size(symbol) if opened is not None else table_lot(Market.HK, symbol)

    try:
        yield LazyBroker("moomoo", config.mode, lazy), LazyMarketData("moomoo", lazy, lot_size)
    finally:
        if lazy.opened is not None:
            await anyio.to_thread.run_sync(lazy.opened.close)
