"""The trading half of the Alpaca emulator: one cash account, its positions and orders, and a matching engine
that behaves like Alpaca where the adapter depends on it.

- Order classes `simple`, `oto`, `bracket` (the exit legs `held` until the entry fills, then `new`) and `oco`
  (a limit order at the take profit with one stop leg, both working at once).
- One-cancels-other: when a leg of a bracket or an OCO group fills, its siblings are cancelled, and cancelling
  one leg cancels its siblings (an OCO's limit and stop cancel each other).
- Working exit orders hold shares: a sell (or an OCO) for more than the position less what working sells
  hold (a group holds once) is refused with 403 40310000 "insufficient qty available", and the same for buys
  that cover a short position. No margin and no shorting: a short exists only when a test sets one.
- Matching runs on every request while the session is open (`match()` runs it on demand): market orders fill
  at the ask (buys) or the bid (sells); limit orders once the market reaches their price, at that market
  price; stop orders once the bid (sells) or the ask (buys) crosses the stop, at that bid or ask. A partially
  filled order waits for `fill()`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from starlette.responses import JSONResponse

from tests.fakes import alpaca_payloads as js
from tests.fakes.alpaca_market import MarketRoutes
from tests.fakes.alpaca_payloads import PROFILE, EmuOrder, error

WORKING = {"new", "accepted", "held", "partially_filled", "pending_cancel", "pending_new"}
_MATCHABLE = ("accepted", "new")  # a partial fill waits for the test's fill()
CENT = Decimal("0.01")


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _qty(value: Any) -> Decimal:
    """Alpaca answers whole quantities without a fraction ("10", not "10.0")."""
    d = _dec(value)
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d


class AlpacaAccount(MarketRoutes):
    """One account at the emulated Alpaca, with hooks for tests."""

    def __init__(self, cash: str) -> None:
        self.cash = self.starting_cash = Decimal(cash)
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed quantity, average price)
        self.orders: dict[str, EmuOrder] = {}
        self.activities: list[dict[str, Any]] = []
        self.partial_share: Decimal | None = None  # the next fill takes this share of the order
        self.reject_reason: str | None = None  # the next order is accepted, then rejected
        self.drop_legs = False  # the next order comes back without its exit legs
        self.slow_cancel_reads = 0  # the next cancel stays pending_cancel for this many reads

    # --- test hooks -------------------------------------------------------------------------------------

    def top_orders(self) -> list[EmuOrder]:
        return [o for o in self.orders.values() if o.parent is None]

    def legs_of(self, order: EmuOrder) -> list[EmuOrder]:
        return [self.orders[i] for i in order.legs]

    def by_client_id(self, client_order_id: str) -> EmuOrder | None:
        return next((o for o in self.orders.values() if o.client_order_id == client_order_id), None)

    def working(self, symbol: str | None = None) -> list[EmuOrder]:
        """Working orders (legs included), oldest first."""
        return [o for o in self.orders.values() if o.status in WORKING and symbol in (None, o.symbol)]

    def fill(self, order_id: str, qty: Decimal | None = None) -> None:
        """Fill `qty` (default: the rest) of an open order at the current price, as the market would."""
        order = self.orders[order_id]
        self._fill(order, qty or order.qty - order.filled_qty, self._price(order.symbol, order.side))

    def set_position(self, symbol: str, qty: Decimal, avg: Decimal) -> None:
        """Hold `qty` shares (negative: short) at `avg`, as if traded elsewhere; the cash does not move."""
        if qty == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = (qty, avg)

    def match(self) -> None:
        """Execute working orders whose price is reachable, while the market is open (Alpaca does this
        continuously; here every request does it first)."""
        if not PROFILE.is_open(self.clock.now()):
            return
        for order in list(self.orders.values()):
            if order.status not in _MATCHABLE:
                continue
            price = self._reachable(order)
            if price is None:
                order.status = "new"
                continue
            qty = order.qty - order.filled_qty
            if self.partial_share is not None:
                qty = max(Decimal(1), (qty * self.partial_share).to_integral_value(ROUND_DOWN))
                self.partial_share = None
            self._fill(order, qty, price)

    # --- prices, shares, fills ------------------------------------------------------------------------

    def _price(self, symbol: str, side: str) -> Decimal:
        q = self.quote(symbol)
        return q.ask if side == "buy" else q.bid

    def _reachable(self, order: EmuOrder) -> Decimal | None:
        """The price `order` executes at now, or None while the market has not reached it."""
        price, buy = self._price(order.symbol, order.side), order.side == "buy"
        if order.type == "stop":
            assert order.stop_price is not None
            return price if (price >= order.stop_price if buy else price <= order.stop_price) else None
        if order.limit_price is not None and (price > order.limit_price if buy else price < order.limit_price):
            return None
        return price

    def _waiting(self, order: EmuOrder) -> bool:
        """True for a leg held until its entry fills."""
        return order.parent is not None and self.orders[order.parent].status != "filled" and order.status == "held"

    def _group(self, order: EmuOrder) -> list[EmuOrder]:
        """The orders that cancel each other with `order`: an OCO's limit and stop, or a bracket's (one-
        triggers-other's) legs; an order outside a group alone."""
        root = self.orders[order.parent] if order.parent is not None else order
        if root.order_class == "oco":
            return [root, *self.legs_of(root)]
        return self.legs_of(root) if order.parent is not None else [order]

    def _available(self, symbol: str, side: str) -> Decimal:
        """Shares an order on `side` may close: the long (sells) or short (buys) position less what working
        orders on that side hold; a one-cancels-other group holds once, a leg waiting for its entry not yet."""
        held_qty = self.positions.get(symbol, (Decimal(0), Decimal(0)))[0]
        position = held_qty if side == "sell" else -held_qty
        if position <= 0:
            return Decimal(0)
        groups: dict[str, Decimal] = {}
        for o in self.working(symbol):
            if o.side == side and not self._waiting(o):
                key = self._group(o)[0].id
                groups[key] = max(groups.get(key, Decimal(0)), o.qty - o.filled_qty)
        return position - sum(groups.values(), Decimal(0))

    def _fill(self, order: EmuOrder, qty: Decimal, price: Decimal) -> None:
        now = self.clock.now()
        held, avg = self.positions.get(order.symbol, (Decimal(0), Decimal(0)))
        signed = qty if order.side == "buy" else -qty
        after = held + signed
        if after == 0:
            self.positions.pop(order.symbol, None)
        elif held == 0 or (held > 0) == (signed > 0):  # opened or grew
            self.positions[order.symbol] = (after, (avg * abs(held) + price * qty) / abs(after))
        else:  # shrank, or turned over at this price
            self.positions[order.symbol] = (after, avg if (after > 0) == (held > 0) else price)
        self.cash -= signed * price
        total = order.filled_qty + qty
        order.filled_avg_price = ((order.filled_avg_price or Decimal(0)) * order.filled_qty + price * qty) / total
        order.filled_qty, order.updated_at = total, now
        order.status = "filled" if total == order.qty else "partially_filled"
        if order.status == "filled":
            order.filled_at = now
            if order.parent is None and order.order_class in ("bracket", "oto"):
                for leg in self.legs_of(order):
                    leg.status = "new" if leg.status == "held" else leg.status
        if order.parent is not None or order.order_class == "oco":
            self._end([o for o in self._group(order) if o is not order], now)
        self.activities.append(js.fill_activity(order, qty, price, now))

    def _end(self, group: list[EmuOrder], now: datetime, status: str = "canceled") -> None:
        for o in group:
            if o.status in WORKING:
                o.status, o.canceled_at, o.updated_at = status, now, now

    # --- placing and cancelling -------------------------------------------------------------------------

    def refuse(self, body: dict[str, Any]) -> JSONResponse | None:
        """Alpaca's synchronous refusals of a new order: 422 for the request, 403 for money or shares."""
        symbol, side, qty = str(body.get("symbol")), body.get("side"), _qty(body.get("qty", "0"))
        order_class, kind = body.get("order_class") or "simple", body.get("type")
        take, stop = body.get("take_profit") or {}, body.get("stop_loss") or {}
        if self.by_client_id(str(body.get("client_order_id"))) is not None:
            return error(422, 40010001, "client_order_id must be unique")
        if symbol not in self.universe:
            return error(422, 40010001, f'asset "{symbol}" not found')
        if qty <= 0 or qty != qty.to_integral_value() or side not in ("buy", "sell"):
            return error(422, 40010001, "qty must be a positive whole number and side buy or sell")
        prices = {"limit_price": body.get("limit_price"), "stop_price": body.get("stop_price")}
        prices |= {f"take_profit.{k}": v for k, v in take.items()} | {f"stop_loss.{k}": v for k, v in stop.items()}
        for name, value in prices.items():
            if value is not None and _dec(value) != PROFILE.round_to_tick(_dec(value)):
                return error(422, 42210000, f"invalid {name} {value}: sub-penny increment does not fulfill criteria")
        if kind == "stop" and body.get("stop_price") is None:
            return error(422, 40010001, "stop_price is required for stop orders")
        if order_class in ("bracket", "oco") and not ("limit_price" in take and "stop_price" in stop):
            return error(422, 40010001, f"{order_class} orders must specify both take_profit and stop_loss")
        sign = 1 if side == "buy" else -1
        if order_class == "oco":
            if kind != "limit":
                return error(422, 40010001, "oco orders must be limit orders")
            target, trigger = _dec(take["limit_price"]), _dec(stop["stop_price"])
            if body.get("limit_price") is not None and _dec(body["limit_price"]) != target:
                return error(422, 40010001, "limit_price must equal take_profit.limit_price for oco orders")
            if sign * (trigger - target) < CENT:
                return error(422, 42210000, "take_profit.limit_price must be beyond stop_loss.stop_price by 0.01")
        elif order_class in ("bracket", "oto"):
            base = _dec(body.get("limit_price") or self.quote(symbol).last)
            if "limit_price" in take and sign * (_dec(take["limit_price"]) - base) < CENT:
                return error(422, 42210000, "take_profit.limit_price must be beyond the base price by 0.01")
            if "stop_price" in stop and sign * (base - _dec(stop["stop_price"])) < CENT:
                return error(422, 42210000, "stop_loss.stop_price must be beyond the base price by 0.01")
        short = self.positions.get(symbol, (Decimal(0), Decimal(0)))[0] < 0
        if side == "buy" and qty * self._price(symbol, "buy") > self.cash:
            return error(403, 40310000, "insufficient buying power")
        if (side == "sell" or short) and qty > (available := self._available(symbol, side)):
            return error(
                403, 40310000, f"insufficient qty available for order (requested: {qty}, available: {available})"
            )
        return None

    def create(self, body: dict[str, Any]) -> EmuOrder:
        now = self.clock.now()
        order_class = body.get("order_class") or "simple"
        take, stop = body.get("take_profit") or {}, body.get("stop_loss") or {}
        limit = body.get("limit_price") or (take.get("limit_price") if order_class == "oco" else None)
        order = EmuOrder(
            str(uuid.uuid4()),
            body.get("client_order_id") or str(uuid.uuid4()),
            body["symbol"],
            body["side"],
            _qty(body["qty"]),
            body["type"],
            order_class,
            now,
            limit_price=None if limit is None else _dec(limit),
            stop_price=None if body.get("stop_price") is None else _dec(body["stop_price"]),
            time_in_force=body.get("time_in_force") or "day",
        )
        self.orders[order.id] = order
        exit_side = "sell" if order.side == "buy" else "buy"
        if order_class == "oco":
            specs, leg_side, leg_status = [("stop", stop)], order.side, "new"
        elif order_class in ("bracket", "oto"):
            specs, leg_side, leg_status = [("limit", take), ("stop", stop)], exit_side, "held"
        else:
            specs, leg_side, leg_status = [], exit_side, "held"
        for kind, spec in specs if not self.drop_legs else []:
            if spec:
                leg = EmuOrder(
                    str(uuid.uuid4()),
                    str(uuid.uuid4()),
                    order.symbol,
                    leg_side,
                    order.qty,
                    kind,
                    order_class,
                    now,
                    status=leg_status,
                    parent=order.id,
                    time_in_force=order.time_in_force,
                )
                leg.limit_price = _dec(spec["limit_price"]) if kind == "limit" else None
                leg.stop_price = _dec(spec["stop_price"]) if kind == "stop" else None
                self.orders[leg.id] = leg
                order.legs.append(leg.id)
        self.drop_legs = False
        if self.reject_reason is not None:
            order.status, order.failed_at, self.reject_reason = "rejected", now, None
            self._end(self.legs_of(order), now)
        self.match()
        return order

    def cancel(self, order: EmuOrder) -> None:
        """Cancel `order` with the orders that go with it: an entry with its legs, a leg with its siblings,
        an OCO order with the other one."""
        group = self._group(order) if order.parent is not None or order.order_class == "oco" else [order]
        if order.parent is None and order.order_class != "oco":
            group += self.legs_of(order)
        self._end(group, self.clock.now())
        if self.slow_cancel_reads:
            order.status, order.pending_cancel_reads = "pending_cancel", self.slow_cancel_reads
            self.slow_cancel_reads = 0
