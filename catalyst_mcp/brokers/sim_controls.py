"""The operator's controls of the simulated exchange, for rehearsing market moves and outages: the broker's
own view of its books, pinned prices, fills from the market, trades made elsewhere, and faults. Used by the
tests and ``catalyst-mcp sim``; nothing in the order path touches them. What they change, every process on the
database sees at once. No fault applies to them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from catalyst_mcp.brokers.sim_book import Conn, Working
from catalyst_mcp.brokers.sim_faults import parse_fault
from catalyst_mcp.brokers.sim_orders import OPEN, SimOrder, decode_orders, order_value
from catalyst_mcp.brokers.sim_prices import Instrument
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import PositionSide, Side
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import Account, Quote


@dataclass(frozen=True, slots=True)
class SimPosition:
    symbol: str
    side: PositionSide
    quantity: Decimal  # positive
    avg_entry_price: Decimal


@dataclass(frozen=True, slots=True)
class SimStatus:
    """The simulated broker's books as it sees them: orders oldest first, protective legs included."""

    account: Account
    positions: tuple[SimPosition, ...]
    orders: tuple[SimOrder, ...]


def _positive(name: str, value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise InvalidInput(f"{name} must be a positive number, got {value}")
    return value


class SimControls:
    """Controls of one :class:`SimExchange` (one market's account)."""

    def __init__(self, exchange: SimExchange) -> None:
        self._exchange = exchange
        self._book = exchange.book

    async def status(self, include_finished: bool = False) -> SimStatus:
        """Account, positions and working orders (held legs included); finished orders too when asked."""
        now = await self._exchange.now()
        where = "TRUE" if include_finished else f"o.status IN {OPEN}"
        row = await self._book.read(
            None,
            f"""(SELECT cash FROM sim.accounts WHERE market = $1) AS cash,
                (SELECT array_agg(ROW(symbol, quantity, avg_entry_price) ORDER BY symbol)
                 FROM sim.positions WHERE market = $1 AND quantity <> 0) AS positions,
                (SELECT array_agg({order_value("o", with_legs=False)}
                                  ORDER BY o.submitted_at, o.parent_id NULLS FIRST, o.client_order_id)
                 FROM sim.orders o WHERE o.market = $1 AND {where}) AS orders""",
            (),
            now,
        )
        positions = tuple(
            SimPosition(symbol, PositionSide.LONG if qty > 0 else PositionSide.SHORT, abs(qty), avg)
            for symbol, qty, avg in row["positions"] or ()
        )
        return SimStatus(self._exchange.account_of(row, now), positions, tuple(decode_orders(row["orders"])))

    # --- prices -------------------------------------------------------------------------------------

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self._book.instrument(symbol)
        if instrument is None:
            raise InvalidInput(f"unknown symbol {symbol} at the simulated {self._book.market} exchange")
        return instrument

    async def quote(self, symbol: str) -> Quote:
        """The symbol's quote now, pinned or not (no fault applies)."""
        self._instrument(symbol)
        async with self._book.pool.acquire() as conn:
            return await self._quote_on(conn, symbol)

    async def _quote_on(self, conn: Conn, symbol: str) -> Quote:
        instrument = self._instrument(symbol)
        now = await self._exchange.now()
        pin = await conn.fetchval(
            "SELECT price FROM sim.prices WHERE market = $1 AND symbol = $2", self._book.market, symbol
        )
        return self._book.quote(instrument, now, pin)

    async def pin_price(self, symbol: str, price: Decimal) -> Quote:
        """Pin the symbol's last price (rounded to the tick); its quotes are built around it. The new quote."""
        instrument = self._instrument(symbol)
        pinned = self._book.profile.round_to_tick(_positive("price", price))
        if pinned <= 0:
            raise InvalidInput(f"price {plain(price)} is below the smallest tick")
        async with self._book.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO sim.prices (market, symbol, price) VALUES ($1, $2, $3)
                   ON CONFLICT (market, symbol) DO UPDATE SET price = $3""",
                self._book.market,
                instrument.symbol,
                pinned,
            )
        return await self.quote(symbol)

    async def move_price(self, symbol: str, pct: Decimal) -> Quote:
        """Pin the price at the current last × (1 + pct/100); ``pct`` is signed."""
        if not pct.is_finite():
            raise InvalidInput(f"percentage must be a number, got {pct}")
        last = (await self.quote(symbol)).last
        moved = last * (1 + pct / 100)
        if moved <= 0:
            raise InvalidInput(f"moving {symbol} by {plain(pct)}% leaves no positive price")
        return await self.pin_price(symbol, moved)

    async def release_price(self, symbol: str) -> Quote:
        """Unpin the price: the model's path again. The new quote."""
        self._instrument(symbol)
        async with self._book.pool.acquire() as conn:
            await conn.execute("DELETE FROM sim.prices WHERE market = $1 AND symbol = $2", self._book.market, symbol)
        return await self.quote(symbol)

    # --- trades -------------------------------------------------------------------------------------

    async def fill(self, order_id: str, quantity: Decimal | None = None, price: Decimal | None = None) -> SimOrder:
        """Fill a working order (by broker or client order id), partly or all that is left, at ``price`` or the
        touch (a buy at the ask, a sell at the bid): a match arriving from the market. The order after it."""
        now = await self._exchange.now()

        async def fill(conn: Conn, cash: Decimal) -> SimOrder:
            found = await self._book.load(
                conn, "o.broker_order_id = $2 OR o.client_order_id = $2", order_id, with_legs=False
            )
            if not found:
                raise InvalidInput(f"unknown order {order_id}")
            order = found[0]
            if not order.is_working:
                raise InvalidInput(f"order {order_id} is {order.status}, not working")
            qty = order.remaining if quantity is None else _positive("quantity", quantity)
            if qty > order.remaining:
                raise InvalidInput(
                    f"order {order_id} has {plain(order.remaining)} shares left to fill, not {plain(qty)}"
                )
            if price is None:
                quote = await self._quote_on(conn, order.symbol)
                at = quote.ask if order.side is Side.BUY else quote.bid
            else:
                at = _positive("price", price)
            working = Working(
                order.broker_order_id,
                order.symbol,
                order.side,
                order.type,
                order.limit_price,
                order.stop_price,
                order.remaining,
            )
            await self._book.book_fill(conn, working, qty, at, now)
            [after] = await self._book.load(conn, "o.broker_order_id = $2", order.broker_order_id, with_legs=False)
            return after

        return await self._book.write(None, fill)

    async def set_position(self, symbol: str, quantity: Decimal, avg_price: Decimal | None = None) -> None:
        """Make the broker hold ``quantity`` (signed; 0 removes it) of ``symbol`` at ``avg_price`` (default: the
        current last), as if traded elsewhere: the book does not know. The symbol is taken as given, so a
        broker's odd spellings can be rehearsed; without ``avg_price`` it must be listed."""
        if not quantity.is_finite():
            raise InvalidInput(f"quantity must be a number, got {quantity}")
        avg = None
        if quantity != 0:
            avg = (await self.quote(symbol)).last if avg_price is None else _positive("average price", avg_price)

        async def place(conn: Conn, cash: Decimal) -> None:
            if avg is None:
                await conn.execute(
                    "DELETE FROM sim.positions WHERE market = $1 AND symbol = $2", self._book.market, symbol
                )
                return
            await conn.execute(
                """INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (market, symbol) DO UPDATE SET quantity = $3, avg_entry_price = $4""",
                self._book.market,
                symbol,
                quantity,
                avg,
            )

        await self._book.write(None, place)

    # --- faults -------------------------------------------------------------------------------------

    async def fault(self, operation: str, mode: str, times: int | None = None) -> None:
        """Make ``operation`` fail in ``mode`` for the next ``times`` calls (every process), or until cleared."""
        op, kind = parse_fault(operation, mode)
        if times is not None and times < 1:
            raise InvalidInput(f"times must be 1 or more, got {times}")
        async with self._book.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO sim.faults (market, operation, mode, remaining) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (market, operation) DO UPDATE SET mode = $3, remaining = $4""",
                self._book.market,
                op.value,
                kind.value,
                times,
            )

    async def clear_faults(self) -> None:
        async with self._book.pool.acquire() as conn:
            await conn.execute("DELETE FROM sim.faults WHERE market = $1", self._book.market)
