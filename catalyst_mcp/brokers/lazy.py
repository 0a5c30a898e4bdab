"""An SDK-backed adapter as a server opens it: built once, in a worker thread, by the first call that needs it
(importing a broker's SDK takes most of a second), so a server answers the MCP handshake without it. The
Broker and MarketData ports here only delegate to the adapter once it is built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

import anyio

from catalyst_mcp.domain.enums import BrokerMode, Side
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, OrderIntent, Quote
from catalyst_mcp.ports import Broker, MarketData
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow


class Opened(Protocol):
    """A built adapter: its two halves, and ``close`` for its SDK's sessions (blocking)."""

    @property
    def broker(self) -> Broker: ...

    @property
    def market_data(self) -> MarketData: ...

    def close(self) -> None: ...


O_co = TypeVar("O_co", bound=Opened, covariant=True)


class LazyAdapter(Generic[O_co]):
    """Builds the adapter once, in a worker thread, on first use; ``opened`` is None until then."""

    def __init__(self, build: Callable[[], O_co]) -> None:
        self._build = build
        self._lock = anyio.Lock()
        self.opened: O_co | None = None

    async def get(self) -> O_co:
        if self.opened is None:
            async with self._lock:
                if self.opened is None:
                    self.opened = await anyio.to_thread.run_sync(self._build)
        return self.opened


class LazyBroker:
    """A broker whose adapter is built by its first call."""

    def __init__(self, name: str, mode: BrokerMode, lazy: LazyAdapter[Opened]) -> None:
        self.name = name
        self._mode = mode
        self._lazy = lazy

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


class LazyMarketData:
    """Market data whose adapter is built by its first call; ``lot_size`` (not awaited) answers before that."""

    def __init__(self, source: str, lazy: LazyAdapter[Opened], lot_size: Callable[[str], Decimal]) -> None:
        self.source = source
        self._lazy = lazy
        self._lot_size = lot_size

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
        return self._lot_size(symbol)
