"""The ports the services depend on. Adapters implement them; the core never imports an adapter."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from catalyst_mcp.domain.enums import BrokerMode
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, Candidate, OrderIntent, Quote


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class Broker(Protocol):
    """An account at a broker. Every order carries a client_order_id; submitting the same id twice
    must never create a second order."""

    @property
    def name(self) -> str: ...

    @property
    def mode(self) -> BrokerMode: ...

    async def get_account(self) -> Account: ...

    async def get_positions(self) -> list[BrokerPosition]: ...

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder: ...

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id, with its fills so far; None when the broker has none."""
        ...

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        """Working orders (accepted or partially filled), optionally for one symbol."""
        ...

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder: ...

    async def is_market_open(self) -> bool: ...

    async def now(self) -> datetime:
        """The broker's clock (the simulated exchange has its own)."""
        ...


class MarketData(Protocol):
    @property
    def tier(self) -> str:
        """Where the data comes from, as scan_market reports it (``simulated``, ``alpaca-iex``)."""
        ...

    async def get_quote(self, symbol: str) -> Quote | None:
        """The latest quote, or None when the symbol is unknown."""
        ...

    async def scan(self, limit: int) -> list[Candidate]:
        """Candidates ranked by momentum, best first."""
        ...

    def lot_size(self, symbol: str) -> Decimal: ...
