"""Placing orders at the simulated exchange, as Alpaca does: an entry with its protective legs (a bracket, or
one-triggers-other with one leg), protective orders for a position held now (one-cancels-other), and the
refusals Alpaca answers at submit without creating an order (shares not available, buying power)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from catalyst_mcp.brokers.sim_book import Conn, SimBook, Working, pins_of
from catalyst_mcp.brokers.sim_orders import WORKING, SimOrder
from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected
from catalyst_mcp.domain.models import OrderIntent


@dataclass(frozen=True, slots=True)
class NewOrder:
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    type: str
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    status: str = "accepted"
    parent_id: str | None = None
    oco_group: str | None = None

    @property
    def working(self) -> Working:
        return Working(
            self.broker_order_id, self.symbol, self.side, self.type, self.limit_price, self.stop_price, self.quantity
        )


@dataclass(frozen=True, slots=True)
class _Room:
    position: Decimal  # signed
    reserved: Decimal  # shares held by working orders on the side asked about (an OCO group counts once)
    committed: Decimal  # cash held by working buys (an OCO group counts once)
    pins: dict[str, Decimal]


def _opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def _check_prices(exit_side: Side, stop_loss: Decimal | None, take_profit: Decimal | None) -> None:
    for name, price in (("stop loss", stop_loss), ("take profit", take_profit)):
        if price is not None and not (price.is_finite() and price > 0):
            raise BrokerRejected(f"{name} must be a positive price, got {price}")
    if stop_loss is None or take_profit is None:
        return
    if exit_side is Side.SELL and stop_loss >= take_profit:
        raise BrokerRejected(f"stop loss {plain(stop_loss)} must be below take profit {plain(take_profit)}")
    if exit_side is Side.BUY and stop_loss <= take_profit:
        raise BrokerRejected(f"stop loss {plain(stop_loss)} must be above take profit {plain(take_profit)}")


async def _room(book: SimBook, conn: Conn, symbol: str, side: Side) -> _Room:
    row = await conn.fetchrow(
        f"""SELECT COALESCE((SELECT quantity FROM sim.positions WHERE market = $1 AND symbol = $2), 0) AS position,
                   (SELECT COALESCE(sum(q), 0) FROM (
                        SELECT max(quantity - filled_quantity) AS q FROM sim.orders
                        WHERE market = $1 AND symbol = $2 AND side = $3 AND status IN {WORKING}
                        GROUP BY COALESCE(oco_group, broker_order_id)) g) AS reserved,
                   (SELECT COALESCE(sum(v), 0) FROM (
                        SELECT max((quantity - filled_quantity) * COALESCE(limit_price, stop_price, 0)) AS v
                        FROM sim.orders WHERE market = $1 AND side = 'buy' AND status IN {WORKING}
                        GROUP BY COALESCE(oco_group, broker_order_id)) g) AS committed,
                   (SELECT array_agg(ROW(symbol, price)) FROM sim.prices WHERE market = $1) AS pins""",
        book.market,
        symbol,
        side.value,
    )
    assert row is not None
    return _Room(row["position"], row["reserved"], row["committed"], pins_of(row["pins"]))


def _refuse_unavailable(symbol: str, quantity: Decimal, available: Decimal) -> None:
    if quantity > available:
        free = plain(max(available, Decimal(0)))
        raise BrokerRejected(f"insufficient quantity available: {plain(quantity)} {symbol} requested, {free} available")


async def _insert(book: SimBook, conn: Conn, orders: Sequence[NewOrder], now: datetime) -> None:
    await conn.execute(
        """INSERT INTO sim.orders (broker_order_id, market, client_order_id, symbol, side, quantity, order_type,
                                   limit_price, stop_price, status, parent_id, oco_group, submitted_at, updated_at)
           SELECT id, $1, coid, symbol, side, qty, kind, lim, stop, status, parent, oco, $13, $13
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::text[], $8::numeric[],
                       $9::numeric[], $10::text[], $11::text[], $12::text[])
                AS t(id, coid, symbol, side, qty, kind, lim, stop, status, parent, oco)""",
        book.market,
        [o.broker_order_id for o in orders],
        [o.client_order_id for o in orders],
        [o.symbol for o in orders],
        [o.side.value for o in orders],
        [o.quantity for o in orders],
        [o.type for o in orders],
        [o.limit_price for o in orders],
        [o.stop_price for o in orders],
        [o.status for o in orders],
        [o.parent_id for o in orders],
        [o.oco_group for o in orders],
        now,
    )


async def _existing(book: SimBook, conn: Conn, client_order_id: str) -> SimOrder | None:
    found = await book.load(conn, "o.client_order_id = $2", client_order_id)
    return found[0] if found else None


async def submit(
    book: SimBook, conn: Conn, cash: Decimal, intent: OrderIntent, client_order_id: str, now: datetime
) -> SimOrder:
    """Submit ``intent`` (idempotent by client order id); with a stop loss and/or a take profit its legs go in
    held, for the entry's quantity on the opposite side, one-cancels-other."""
    existing = await _existing(book, conn, client_order_id)
    if existing is not None:
        return existing
    if not (intent.quantity.is_finite() and intent.quantity > 0):
        raise BrokerRejected(f"quantity must be positive, got {intent.quantity}")
    exit_side = _opposite(intent.side)
    _check_prices(exit_side, intent.stop_loss, intent.take_profit)
    await book.match(conn, now)
    instrument = book.instrument(intent.symbol)
    entry = NewOrder(
        uuid.uuid4().hex,
        client_order_id,
        intent.symbol,
        intent.side,
        intent.quantity,
        intent.order_type.value,
        limit_price=intent.limit_price if intent.order_type is OrderType.LIMIT else None,
    )
    pins: dict[str, Decimal] = {}
    if instrument is not None:
        room = await _room(book, conn, intent.symbol, intent.side)
        pins = room.pins
        if intent.side is Side.SELL:
            _refuse_unavailable(intent.symbol, intent.quantity, room.position - room.reserved)
        else:
            price = entry.limit_price or book.quote(instrument, now, pins.get(intent.symbol)).ask
            free = cash - room.committed
            if intent.quantity * price > free:
                raise BrokerRejected(
                    f"insufficient buying power: {plain(intent.quantity)} {intent.symbol} at {plain(price)} needs "
                    f"{plain(intent.quantity * price)}, {plain(max(free, Decimal(0)))} available"
                )
    legs = [
        NewOrder(
            uuid.uuid4().hex,
            f"{client_order_id}.{suffix}",
            intent.symbol,
            exit_side,
            intent.quantity,
            kind,
            limit_price=leg_price if kind == "limit" else None,
            stop_price=leg_price if kind == "stop" else None,
            status="held",
            parent_id=entry.broker_order_id,
            oco_group=entry.broker_order_id,
        )
        for suffix, kind, leg_price in (("sl", "stop", intent.stop_loss), ("tp", "limit", intent.take_profit))
        if leg_price is not None
    ]
    await _insert(book, conn, [entry, *legs], now)
    if instrument is None:
        await book.reject(conn, entry.broker_order_id, now)
    else:
        fill_at = book.fill_price(entry.working, now, pins)
        if fill_at is not None:
            await book.execute(conn, entry.working, entry.quantity, fill_at, now)
    [order] = await book.load(conn, "o.broker_order_id = $2", entry.broker_order_id)
    return order


async def protect(
    book: SimBook,
    conn: Conn,
    symbol: str,
    side: Side,
    quantity: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    client_order_id: str,
    now: datetime,
) -> list[SimOrder]:
    """Protective orders on ``side`` for ``quantity`` shares held now, working at once; with both prices the
    take-profit limit carries ``client_order_id`` and the stop is its leg, one-cancels-other."""
    existing = await _existing(book, conn, client_order_id)
    if existing is not None:
        return [existing, *existing.legs]
    if stop_loss is None and take_profit is None:
        raise BrokerRejected("protect needs a stop loss, a take profit or both")
    if not (quantity.is_finite() and quantity > 0):
        raise BrokerRejected(f"quantity must be positive, got {quantity}")
    _check_prices(side, stop_loss, take_profit)
    instrument = book.instrument(symbol)
    if instrument is None:
        raise BrokerRejected(f"unknown symbol {symbol}")
    await book.match(conn, now)
    room = await _room(book, conn, symbol, side)
    held = room.position if side is Side.SELL else -room.position
    _refuse_unavailable(symbol, quantity, held - room.reserved)
    first = uuid.uuid4().hex
    orders: list[NewOrder]
    if stop_loss is not None and take_profit is not None:
        orders = [
            NewOrder(first, client_order_id, symbol, side, quantity, "limit", limit_price=take_profit, oco_group=first),
            NewOrder(
                uuid.uuid4().hex,
                f"{client_order_id}.sl",
                symbol,
                side,
                quantity,
                "stop",
                stop_price=stop_loss,
                parent_id=first,
                oco_group=first,
            ),
        ]
    elif stop_loss is not None:
        orders = [NewOrder(first, client_order_id, symbol, side, quantity, "stop", stop_price=stop_loss)]
    else:
        orders = [NewOrder(first, client_order_id, symbol, side, quantity, "limit", limit_price=take_profit)]
    await _insert(book, conn, orders, now)
    closed: set[str] = set()
    for order in orders:
        if order.broker_order_id in closed:
            continue
        price = book.fill_price(order.working, now, room.pins)
        if price is not None:
            closed |= await book.execute(conn, order.working, quantity, price, now)
    return await book.load(conn, "o.broker_order_id = ANY($2::text[])", [o.broker_order_id for o in orders])
