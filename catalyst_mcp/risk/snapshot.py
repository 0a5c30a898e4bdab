"""RiskSnapshot: everything the rules may look at, taken at one instant, with the derived quantities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property

from catalyst_mcp.domain.enums import CycleMode, OrderType, Side, TradingState
from catalyst_mcp.domain.models import Account, OrderIntent, Position, Quote


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """One of our working orders: the shares it may still trade and the cash it reserves."""

    symbol: str
    side: Side
    reserved_value: Decimal
    remaining: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class RecentOrder:
    """An order sent earlier today (for duplicate and pace checks)."""

    symbol: str
    side: Side
    at: datetime


@dataclass(frozen=True, slots=True)
class Reservation:
    """An approval issued and not yet executed or expired: it holds its quantity, its value and a place in the
    pace limits as if it were a working order, so collecting approvals first cannot get around a limit."""

    symbol: str
    side: Side
    quantity: Decimal
    value: Decimal  # quantity × the price it was approved at
    at: datetime  # when it was issued (the earliest, for a group)
    count: int = 1  # approvals this one stands for (the snapshot groups them by symbol and side)


@dataclass(frozen=True)
class RiskSnapshot:
    """Everything the rules may look at. Its derived quantities are computed once each (the rules ask for them
    many times per decision), hence no slots: ``cached_property`` keeps them in the instance's dict."""

    intent: OrderIntent
    quote: Quote | None
    lot_size: Decimal | None  # None: the symbol is not tradable here
    account: Account
    positions: Mapping[str, Position]
    market_open: bool
    trading_state: TradingState
    now: datetime
    minutes_to_close: Decimal | None = None  # None when unknown (or closed)
    open_orders: tuple[OpenOrder, ...] = ()
    start_of_day_equity: Decimal | None = None
    last_sync_ok: bool = True
    recent_orders: tuple[RecentOrder, ...] = ()
    market_now: datetime | None = None  # the broker's clock (quotes carry it); ``now`` is the wall clock
    approved_reference: Decimal | None = None  # set when re-checking an approval at execution
    approvals: tuple[Reservation, ...] = ()  # other approvals outstanding (never the one being executed)
    cycle_mode: CycleMode | None = None  # the mode of the cycle the order belongs to; None: outside any cycle
    # At execution the order is judged against what is exposed (the book and our working orders): the other
    # approvals outstanding count in the pace limits only, first come, first served. When the book moved so
    # that not all of them fit any more, they are refused one by one as they execute instead of all blocking
    # each other until they expire.
    at_execution: bool = False
    orders_today: int | None = None  # today's orders when ``recent_orders`` lists only the recent ones
    orders_last_minute: int | None = None  # the last minute's orders when ``recent_orders`` lists fewer

    @cached_property
    def outstanding(self) -> int:
        """How many approvals are outstanding (other than the one being judged)."""
        return sum(a.count for a in self.approvals)

    @cached_property
    def _size_approvals(self) -> tuple[Reservation, ...]:
        return () if self.at_execution else self.approvals

    @cached_property
    def booked(self) -> Decimal:
        """The symbol's signed quantity in the book (negative = short)."""
        position = self.positions.get(self.intent.symbol)
        return Decimal(0) if position is None else position.signed_quantity

    @cached_property
    def reserved_same_side(self) -> Decimal:
        """Shares of the symbol already spoken for on the order's side: the rest of our working orders and
        the approvals outstanding. Counted as if they all fill, whichever way that moves the position."""
        symbol, side = self.intent.symbol, self.intent.side
        working = sum((o.remaining for o in self.open_orders if o.symbol == symbol and o.side is side), Decimal(0))
        approved = sum((a.quantity for a in self._size_approvals if a.symbol == symbol and a.side is side), Decimal(0))
        return working + approved

    @cached_property
    def held(self) -> Decimal:
        """The symbol's signed quantity (negative = short) the order is judged against: the book moved by
        every working order and outstanding approval on the order's side, so that two approvals can never
        spend the same room or sell the same shares (orders on the other side are not counted: they may
        never fill)."""
        reserved = self.reserved_same_side
        return self.booked + reserved if self.intent.side is Side.BUY else self.booked - reserved

    @cached_property
    def after(self) -> Decimal:
        """The signed quantity once the order fills completely."""
        signed = self.intent.quantity if self.intent.side is Side.BUY else -self.intent.quantity
        return self.held + signed

    @cached_property
    def is_entry(self) -> bool:
        """True when the order opens, grows or flips a position; False when it only shrinks or closes one."""
        held, after = self.held, self.after
        if after == 0:
            return False
        if held == 0 or (after > 0) != (held > 0):
            return True
        return abs(after) > abs(held)

    @cached_property
    def entry_is_long(self) -> bool:
        return self.after > 0

    @cached_property
    def quote_usable(self) -> bool:
        q = self.quote
        return q is not None and all(v.is_finite() and v > 0 for v in (q.bid, q.ask, q.last)) and q.ask >= q.bid

    @cached_property
    def reference_price(self) -> Decimal | None:
        """The price the order is valued at: the far side of the quote, or the limit if worse for us."""
        intent = self.intent
        if not self.quote_usable:
            return intent.limit_price
        assert self.quote is not None
        if intent.side is Side.BUY:
            price = self.quote.ask
            if intent.order_type is OrderType.LIMIT and intent.limit_price is not None:
                price = max(price, intent.limit_price)
            return price
        return self.quote.bid

    @cached_property
    def notional(self) -> Decimal | None:
        price = self.reference_price
        return None if price is None else price * self.intent.quantity

    @cached_property
    def reserved_by_open_buys(self) -> Decimal:
        """Cash spoken for by working buys and outstanding buy approvals."""
        working = sum((o.reserved_value for o in self.open_orders if o.side is Side.BUY), Decimal(0))
        return working + sum((a.value for a in self._size_approvals if a.side is Side.BUY), Decimal(0))

    @cached_property
    def reserved_symbols(self) -> frozenset[str]:
        """Symbols not in the book that a working order or an outstanding approval may open."""
        pending = {o.symbol for o in self.open_orders} | {a.symbol for a in self._size_approvals}
        return frozenset(pending - set(self.positions))

    @cached_property
    def day_pnl(self) -> Decimal | None:
        """Realised plus unrealised P&L since the start of the day: equity now minus equity then."""
        if self.start_of_day_equity is None:
            return None
        return self.account.equity - self.start_of_day_equity
