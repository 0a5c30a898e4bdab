"""The ports the services depend on. Adapters implement them; the core never imports an adapter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from catalyst_mcp.domain.changes import Change, Published
from catalyst_mcp.domain.enums import BrokerMode, Side
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, OrderIntent, Quote
from catalyst_mcp.domain.roles import Grant
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class Broker(Protocol):
    """An account at a broker. Every order carries a client_order_id; submitting the same id twice
    must never create a second order.

    Failures arrive as the domain's errors: ``BrokerRejected`` (the broker refused a well-formed request and
    did nothing), ``TemporaryFailure`` (refused, timed out, or the answer was lost: for a submit or a cancel,
    the caller cannot know whether the broker acted and must look the order up), ``OperatorNeeded``.
    """

    @property
    def name(self) -> str: ...

    @property
    def mode(self) -> BrokerMode: ...

    async def get_account(self) -> Account: ...

    async def get_positions(self) -> list[BrokerPosition]: ...

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        """Send ``intent``. With a stop loss and/or a take profit it goes out as a bracket (or one-triggers-
        other): the answer's ``legs`` are the protective orders, held until the entry fills, then working
        (one-cancels-other between them)."""
        ...

    async def protect(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        client_order_id: str,
    ) -> list[BrokerOrder]:
        """Place protective exit orders for ``quantity`` shares of a position held now: a stop at
        ``stop_loss`` and a limit at ``take_profit`` on ``side`` (the exit side), one-cancels-other when both
        are given. Returns the orders placed (working), one per leg; the first carries ``client_order_id``."""
        ...

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id with its cumulative fill; None when the broker has none."""
        ...

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        """Working orders (accepted or partially filled), optionally for one symbol, protective legs included
        (each its own entry, with its ``parent_id``; legs still held for an unfilled entry too, as accepted)."""
        ...

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder:
        """Cancel a working order and return its final state (a fill may have come first)."""
        ...

    async def is_market_open(self) -> bool: ...

    async def now(self) -> datetime:
        """The broker's clock (the simulated exchange has its own)."""
        ...


class MarketData(Protocol):
    @property
    def source(self) -> str:
        """Where the data comes from, as scan_market reports it (``simulated``, ``alpaca-iex``)."""
        ...

    async def get_quote(self, symbol: str) -> Quote | None:
        """The latest quote, or None when the symbol is unknown."""
        ...

    async def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """The latest quotes of several symbols in one request; unknown symbols are absent."""
        ...

    async def scan_rows(self, symbols: Sequence[str] | None = None) -> list[ScanRow]:
        """Today's row of each symbol for the scanner (``symbols``, else the source's own universe); symbols it
        does not know, or cannot price, are absent."""
        ...

    async def get_bars(self, symbol: str, size: BarSize, count: int) -> list[Bar]:
        """The latest ``count`` bars of ``size``, oldest first, the one still forming last; [] for a symbol
        it does not know."""
        ...

    def lot_size(self, symbol: str) -> Decimal: ...


class ChangeListening(Protocol):
    """A running listener of the change channel (``Changes.listener``)."""

    async def start(self) -> None:
        """Listen; raises ``OperatorNeeded`` when the channel cannot be reached."""

    async def stop(self) -> None: ...


class Changes(Protocol):
    """The change channel shared by every server process on one database."""

    def listener(
        self, on_change: Callable[[Change], None], on_state: Callable[[bool], None] | None = None
    ) -> ChangeListening:
        """A listener calling ``on_change`` with each change announced, and ``on_state(False)`` when it lost the
        channel, ``on_state(True)`` once listening again (changes may have been missed in between)."""

    async def publish(self, change: Published) -> None:
        """Announce ``change`` to every process, this one included."""


class Grants(Protocol):
    """The HTTP bearer tokens: only their digests are kept."""

    def lookup(self, token: str) -> Grant | None:
        """The grant of a token, or None for a token that is not (or no longer) valid."""

    def is_empty(self) -> bool:
        """True when no token is configured (the server then serves loopback only, unauthenticated)."""
