"""The emulated accounts behind OpenD: a paper (SIMULATE) and a real HK securities account, their cash,
positions and orders, and the matching of orders against the emulated market.

Paper trading takes limit (``NORMAL``) and market day orders during the regular sessions only; the real account
must be unlocked with its trade password first. Orders are whole board lots, limit prices on the spread, sells
within the shares not already held by working sells, buys within the cash. A market order fills at once at the
far side of the quote, a limit order when it crosses it; a test may make the next order of a code fill only in
part (``partial_next``) and fill the rest later (``fill``). Every change of an order is handed to ``on_update``
(the server pushes it). Thread-safe: the server's loop and the test's thread both call in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final

from catalyst_mcp.ports import Clock
from tests.fakes.opend_market import HKT, INSTRUMENTS, Instrument, model_price, on_spread, spread_at, trading

SIMULATE: Final = 0
REAL: Final = 1
PAPER_ACC: Final = 8_001_234
REAL_ACC: Final = 281_756_455
BUY: Final = 1
SELL: Final = 2
NORMAL: Final = 1  # a limit order (HK "enhanced limit")
MARKET: Final = 2

# Futu's order statuses (Trd_Common.OrderStatus).
SUBMITTED: Final = 5
FILLED_PART: Final = 10
FILLED_ALL: Final = 11
CANCELLED_PART: Final = 14
CANCELLED_ALL: Final = 15
FAILED: Final = 21
WORKING: Final = frozenset({SUBMITTED, FILLED_PART})


class Refused(Exception):
    """OpenD answers the request with retType -1 and this message."""


@dataclass
class EmuOrder:
    number: int
    env: int
    acc_id: int
    code: str
    side: int
    order_type: int
    qty: Decimal
    price: Decimal
    remark: str | None
    created: datetime
    status: int = SUBMITTED
    filled: Decimal = Decimal(0)
    fill_value: Decimal = Decimal(0)
    updated: datetime | None = None
    last_err: str = ""

    @property
    def order_id(self) -> str:
        """The order's id as the SDK reports it (``orderIDEx``)."""
        return f"FT{self.number}"

    @property
    def avg_price(self) -> Decimal:
        return (self.fill_value / self.filled).quantize(Decimal("0.001")) if self.filled else Decimal(0)

    @property
    def open_qty(self) -> Decimal:
        return self.qty - self.filled if self.status in WORKING else Decimal(0)


@dataclass
class Holding:
    qty: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)  # total paid for the shares held

    @property
    def avg(self) -> Decimal:
        return (self.cost / self.qty).quantize(Decimal("0.001")) if self.qty else Decimal(0)


@dataclass
class Book:
    """One account's cash and holdings."""

    cash: Decimal
    holdings: dict[str, Holding] = field(default_factory=dict)


class OpenDAccounts:
    def __init__(self, clock: Clock, *, cash: str = "1000000", trade_password: str = "123456") -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.books = {SIMULATE: Book(Decimal(cash)), REAL: Book(Decimal(cash))}
        self.orders: list[EmuOrder] = []
        self.pinned: dict[str, Decimal] = {}
        self.partial: dict[str, Decimal] = {}
        self.trade_password = trade_password
        self.unlocked = False
        self.market_open: bool | None = None  # None: by the clock (sessions and the lunch break)
        self.on_update: Callable[[EmuOrder], None] = lambda order: None
        self._next = 5_731_000_000_000_000

    # --- market ---------------------------------------------------------------------------------------

    def instrument(self, code: str) -> Instrument:
        found = INSTRUMENTS.get(code)
        if found is None:
            raise Refused(f"unknown stock HK.{code}")
        return found

    def last(self, code: str) -> Decimal:
        with self.lock:
            pinned = self.pinned.get(code)
        return pinned if pinned is not None else model_price(self.instrument(code), self.clock.now())

    def quote(self, code: str) -> tuple[Decimal, Decimal, Decimal]:
        """(bid, ask, last): one spread either side of the last price."""
        last = self.last(code)
        spread = spread_at(last)
        return last - spread, last + spread, last

    def is_trading(self) -> bool:
        return self.market_open if self.market_open is not None else trading(self.clock.now())

    # --- test hooks -----------------------------------------------------------------------------------

    def pin(self, code: str, price: str | Decimal) -> None:
        with self.lock:
            self.pinned[code] = Decimal(str(price))

    def partial_next(self, code: str, quantity: int) -> None:
        """The next order of `code` fills only `quantity` shares at first; the rest stays working."""
        with self.lock:
            self.partial[code] = Decimal(quantity)

    def fill(self, order_id: str, quantity: int | None = None) -> EmuOrder:
        """Fill (more of) a working order at its limit, or at the quote for a market order."""
        with self.lock:
            order = self.order(order_id)
            if order.status not in WORKING:
                raise ValueError(f"order {order_id} is not working")
            bid, ask, _ = self.quote(order.code)
            price = order.price if order.order_type == NORMAL else (ask if order.side == BUY else bid)
            self._execute(order, Decimal(quantity) if quantity is not None else order.qty - order.filled, price)
        self.on_update(order)
        return order

    def set_holding(self, env: int, code: str, qty: int, avg: str) -> None:
        """A position the account holds from outside the adapter (an external trade)."""
        with self.lock:
            self.books[env].holdings[code] = Holding(Decimal(qty), Decimal(qty) * Decimal(avg))

    def order(self, order_id: str) -> EmuOrder:
        for order in self.orders:
            if order.order_id == order_id:
                return order
        raise Refused(f"order {order_id} does not exist")

    def orders_of(self, env: int) -> list[EmuOrder]:
        with self.lock:
            return [o for o in self.orders if o.env == env]

    def positions_of(self, env: int) -> dict[str, Decimal]:
        with self.lock:
            return {code: h.qty for code, h in self.books[env].holdings.items() if h.qty}

    # --- requests -------------------------------------------------------------------------------------

    def check_env(self, env: int, acc_id: int) -> None:
        if (env, acc_id) not in ((SIMULATE, PAPER_ACC), (REAL, REAL_ACC)):
            raise Refused(f"account {acc_id} does not belong to this trading environment")
        if env == REAL and not self.unlocked:
            raise Refused("trading is locked: unlock it with the trade password first")

    def unlock(self, password_md5: str, unlock: bool) -> None:
        import hashlib

        if unlock and password_md5 != hashlib.md5(self.trade_password.encode()).hexdigest():
            raise Refused("wrong trade password")
        self.unlocked = unlock

    def place(
        self,
        *,
        env: int,
        acc_id: int,
        code: str,
        side: int,
        order_type: int,
        qty: Decimal,
        price: Decimal,
        remark: str | None,
        time_in_force: int,
        store: bool = True,
    ) -> EmuOrder:
        """Validate and store an order, then match it. `store=False` validates only (a request lost before)."""
        with self.lock:
            self.check_env(env, acc_id)
            instrument = self.instrument(code)
            if side not in (BUY, SELL):
                raise Refused("only buy and sell are supported for HK securities")
            if order_type not in (NORMAL, MARKET):
                raise Refused("paper trading accepts limit and market orders only")
            if time_in_force != 0:
                raise Refused("paper trading accepts day orders only")
            if not self.is_trading():
                raise Refused("the market is not open: orders are accepted during trading hours only")
            if qty <= 0 or qty % instrument.lot:
                raise Refused(f"the quantity must be a whole number of lots ({instrument.lot} shares a lot)")
            if order_type == NORMAL and not on_spread(price):
                raise Refused(f"the price {price} is not a multiple of the price spread {spread_at(price)}")
            if remark is not None and len(remark.encode()) > 64:
                raise Refused("the remark is longer than 64 bytes")
            book = self.books[env]
            bid, ask, _ = self.quote(code)
            if side == BUY:
                cost = qty * (ask if order_type == MARKET else price)
                if cost > book.cash:
                    raise Refused("insufficient buying power")
            else:
                held = book.holdings.get(code, Holding()).qty
                selling = sum((o.open_qty for o in self.orders if o.env == env and o.code == code and o.side == SELL),
                              Decimal(0))  # fmt: skip
                if qty > held - selling:
                    raise Refused("insufficient sellable quantity")
            now = self.clock.now()
            self._next += 1
            order = EmuOrder(self._next, env, acc_id, code, side, order_type, qty, price, remark, now, updated=now)
            if not store:
                return order
            self.orders.append(order)
            self._match(order, bid, ask)
        self.on_update(order)
        return order

    def _match(self, order: EmuOrder, bid: Decimal, ask: Decimal) -> None:
        if order.order_type == MARKET:
            at = ask if order.side == BUY else bid
        elif order.side == BUY and order.price >= ask:
            at = ask
        elif order.side == SELL and order.price <= bid:
            at = bid
        else:
            return
        quantity = min(self.partial.pop(order.code, order.qty), order.qty)
        self._execute(order, quantity, at)

    def _execute(self, order: EmuOrder, quantity: Decimal, price: Decimal) -> None:
        quantity = min(quantity, order.qty - order.filled)
        book = self.books[order.env]
        holding = book.holdings.setdefault(order.code, Holding())
        if order.side == BUY:
            book.cash -= quantity * price
            holding.qty += quantity
            holding.cost += quantity * price
        else:
            book.cash += quantity * price
            holding.cost -= holding.avg * quantity if holding.qty > quantity else holding.cost
            holding.qty -= quantity
        order.filled += quantity
        order.fill_value += quantity * price
        order.status = FILLED_ALL if order.filled >= order.qty else FILLED_PART
        order.updated = self.clock.now()

    def cancel(self, env: int, acc_id: int, order_id: str) -> EmuOrder:
        with self.lock:
            self.check_env(env, acc_id)
            order = self.order(order_id)
            if order.env != env:
                raise Refused(f"order {order_id} does not exist")
            if order.status not in WORKING:
                raise Refused(f"order {order_id} can no longer be cancelled")
            order.status = CANCELLED_PART if order.filled else CANCELLED_ALL
            order.updated = self.clock.now()
        self.on_update(order)
        return order

    def modify(self, env: int, acc_id: int, order_id: str, qty: Decimal, price: Decimal) -> EmuOrder:
        with self.lock:
            self.check_env(env, acc_id)
            order = self.order(order_id)
            if order.status not in WORKING:
                raise Refused(f"order {order_id} can no longer be modified")
            lot = self.instrument(order.code).lot
            if qty < order.filled or qty % lot or (order.order_type == NORMAL and not on_spread(price)):
                raise Refused("invalid quantity or price for the modification")
            order.qty, order.price, order.updated = qty, price, self.clock.now()
            bid, ask, _ = self.quote(order.code)
            self._match(order, bid, ask)
        self.on_update(order)
        return order

    def funds(self, env: int) -> tuple[Decimal, Decimal]:
        """(cash, market value of the holdings)."""
        with self.lock:
            book = self.books[env]
            value = sum((h.qty * self.last(code) for code, h in book.holdings.items()), Decimal(0))
            return book.cash, value

    def today(self, order: EmuOrder) -> bool:
        return order.created.astimezone(HKT).date() == self.clock.now().astimezone(HKT).date()
