"""The simulated exchange's books in PostgreSQL: how a call reads them (fault, matching and answer in as few
round trips as possible), how a write is serialised per account, and how resting orders match and fills are
booked, with the protective legs' lifecycle (held until the entry has filled completely, one-cancels-other)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

import asyncpg

from catalyst_mcp.brokers.sim_faults import FaultMode, FaultOp, mode_of, refuse_after, refuse_before, with_fault
from catalyst_mcp.brokers.sim_orders import OPEN, WORKING, SimOrder, decode_orders, order_value
from catalyst_mcp.brokers.sim_prices import Instrument, pinned_quote, quote_at, universe_for
from catalyst_mcp.domain.enums import Side
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.domain.models import Quote
from catalyst_mcp.markets.profiles import MarketProfile

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
T = TypeVar("T")

_WORKING_COLUMNS = "broker_order_id, symbol, side, order_type, limit_price, stop_price, quantity - filled_quantity"
_PINS = "(SELECT array_agg(ROW(symbol, price)) FROM sim.prices WHERE market = $1)"
_RESTING = f"(SELECT array_agg(ROW({_WORKING_COLUMNS})) FROM sim.orders WHERE market = $1 AND status IN {WORKING})"


@dataclass(frozen=True, slots=True)
class Working:
    """A working order as matching needs it."""

    broker_order_id: str
    symbol: str
    side: Side
    type: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    remaining: Decimal

    @classmethod
    def of(cls, value: Sequence[Any]) -> Working:
        oid, symbol, side, kind, limit, stop, remaining = value
        return cls(oid, symbol, Side(side), kind, limit, stop, remaining)


def pins_of(values: Iterable[Sequence[Any]] | None) -> dict[str, Decimal]:
    return {symbol: price for symbol, price in values or ()}


class SimBook:
    """One simulated account per market: its cash, positions, orders and fills in schema ``sim``."""

    def __init__(self, pool: asyncpg.Pool, profile: MarketProfile, *, seed: int, starting_cash: Decimal) -> None:
        self.pool = pool
        self.profile = profile
        self.seed = seed
        self.starting_cash = starting_cash
        self.market = profile.market.value
        self.universe: Mapping[str, Instrument] = universe_for(profile.market)

    # --- prices -------------------------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument | None:
        return self.universe.get(symbol)

    def quote(self, instrument: Instrument, now: datetime, pin: Decimal | None) -> Quote:
        if pin is None:
            return quote_at(self.seed, instrument, now, self.profile)
        return pinned_quote(self.seed, instrument, now, self.profile, pin)

    def fill_price(
        self, order: Working, now: datetime, pins: Mapping[str, Decimal], quotes: dict[str, Quote] | None = None
    ) -> Decimal | None:
        """The price ``order`` fills at now (the touch: a buy at the ask, a sell at the bid), or None when it
        does not: a limit beyond the touch, a stop not triggered, an unknown symbol. ``quotes`` keeps the quotes
        of one pass over many orders (one per symbol: the price model is the costly part)."""
        instrument = self.instrument(order.symbol)
        if instrument is None:
            return None
        quote = quotes.get(order.symbol) if quotes is not None else None
        if quote is None:
            quote = self.quote(instrument, now, pins.get(order.symbol))
            if quotes is not None:
                quotes[order.symbol] = quote
        buy = order.side is Side.BUY
        price = quote.ask if buy else quote.bid
        if order.type == "limit":
            assert order.limit_price is not None
            reached = order.limit_price >= price if buy else order.limit_price <= price
        elif order.type == "stop":
            assert order.stop_price is not None
            reached = price >= order.stop_price if buy else price <= order.stop_price
        else:
            reached = True
        return price if reached else None

    # --- calls --------------------------------------------------------------------------------------

    async def read(self, op: FaultOp | None, columns: str, args: Sequence[object], now: datetime) -> Any:
        """Read ``columns`` (SQL expressions of one row; $1 is the market, ``args`` are $2…) as ``op``.

        One statement consumes the fault, opens the account if there is none yet (a broker's account exists
        from the start), reads the answer and the working orders; only when one of them can match now does a
        transaction match them and read the answer again. None for an ``empty`` fault.
        """
        clause, fault = with_fault(op)
        currency, cash = f"${len(args) + 2}", f"${len(args) + 3}"
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"""{clause}, opened AS (INSERT INTO sim.accounts (market, currency, cash, starting_cash)
                                         SELECT $1, {currency}, {cash}, {cash}
                                         WHERE NOT EXISTS (SELECT FROM sim.accounts WHERE market = $1)
                                         ON CONFLICT (market) DO NOTHING)
                    SELECT {fault} AS fault, {_RESTING} AS resting, {_PINS} AS pins, {columns}""",
                self.market,
                *args,
                self.profile.currency,
                self.starting_cash,
            )
            assert row is not None
            mode = mode_of(row["fault"])
            refuse_before(op, mode)
            if mode is FaultMode.EMPTY:
                return None
            pins = pins_of(row["pins"])
            quotes: dict[str, Quote] = {}
            if any(self.fill_price(Working.of(w), now, pins, quotes) is not None for w in row["resting"] or ()):
                async with conn.transaction():
                    await self.lock_account(conn)
                    await self.match(conn, now)
                    row = await conn.fetchrow(f"SELECT {_PINS} AS pins, {columns}", self.market, *args)
        refuse_after(op, mode)
        return row

    async def write(self, op: FaultOp | None, action: Callable[[Conn, Decimal], Awaitable[T]]) -> T:
        """Run ``action(conn, cash)`` as ``op`` in one transaction that holds the account's row lock, so writes
        to one account never interleave. The fault is consumed in the statement that takes the lock. A
        refusal raised by ``action`` still commits what happened before it (the fault, matches) and is raised
        after the commit, unless the fault lost the answer."""
        clause, fault = with_fault(op)
        outcome: T | CatalystError | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            head = await conn.fetchrow(
                f"""{clause}, acct AS ({self._upsert_account()})
                    SELECT {fault} AS fault, (SELECT cash FROM acct) AS cash""",
                self.market,
                self.profile.currency,
                self.starting_cash,
            )
            assert head is not None
            mode = mode_of(head["fault"])
            if mode not in (FaultMode.ERROR, FaultMode.TIMEOUT):
                try:
                    outcome = await action(conn, head["cash"])
                except CatalystError as exc:  # a refusal: nothing of its own was written
                    outcome = exc
        refuse_before(op, mode)
        refuse_after(op, mode)
        if isinstance(outcome, CatalystError):
            raise outcome
        return cast(T, outcome)

    @staticmethod
    def _upsert_account() -> str:
        # DO UPDATE (not DO NOTHING): it locks the row and returns it whether it was there or not.
        return """INSERT INTO sim.accounts (market, currency, cash, starting_cash) VALUES ($1, $2, $3, $3)
                  ON CONFLICT (market) DO UPDATE SET cash = sim.accounts.cash RETURNING cash"""

    async def lock_account(self, conn: Conn) -> Decimal:
        """Create the account if needed and lock it for this transaction; its cash."""
        cash = await conn.fetchval(self._upsert_account(), self.market, self.profile.currency, self.starting_cash)
        assert isinstance(cash, Decimal)
        return cash

    async def load(self, conn: Conn, where: str, *args: object, with_legs: bool = True) -> list[SimOrder]:
        """The orders of ``sim.orders o`` that satisfy ``where`` ($1 is the market), oldest first."""
        values = await conn.fetchval(
            f"""SELECT array_agg({order_value("o", with_legs=with_legs)}
                                 ORDER BY o.submitted_at, o.parent_id NULLS FIRST, o.client_order_id)
                FROM sim.orders o WHERE o.market = $1 AND ({where})""",
            self.market,
            *args,
        )
        return decode_orders(values)

    # --- matching and booking (inside a write's transaction) -----------------------------------------

    async def match(self, conn: Conn, now: datetime) -> None:
        """Fill every working order whose price is reachable now, oldest first; reject what the account cannot
        pay or deliver when it would fill."""
        rows = await conn.fetch(
            f"""SELECT ROW({_WORKING_COLUMNS}) AS working, {_PINS} AS pins FROM sim.orders
                WHERE market = $1 AND status IN {WORKING} ORDER BY submitted_at, broker_order_id FOR UPDATE""",
            self.market,
        )
        closed: set[str] = set()
        quotes: dict[str, Quote] = {}
        for row in rows:
            order = Working.of(row["working"])
            if order.broker_order_id in closed:
                continue
            price = self.fill_price(order, now, pins_of(row["pins"]), quotes)
            if price is not None:
                closed |= await self.execute(conn, order, order.remaining, price, now)

    async def execute(self, conn: Conn, order: Working, quantity: Decimal, price: Decimal, now: datetime) -> set[str]:
        """Fill ``quantity`` of ``order`` at ``price`` if the account can pay (a buy) or deliver (a sell; the
        simulated account does not sell short), else reject it. The orders this closed."""
        row = await conn.fetchrow(
            """SELECT (SELECT cash FROM sim.accounts WHERE market = $1) AS cash,
                      COALESCE((SELECT quantity FROM sim.positions WHERE market = $1 AND symbol = $2), 0) AS held""",
            self.market,
            order.symbol,
        )
        assert row is not None
        if (order.side is Side.BUY and quantity * price > row["cash"]) or (
            order.side is Side.SELL and quantity > row["held"]
        ):
            await self.reject(conn, order.broker_order_id, now)
            return {order.broker_order_id}
        return await self.book_fill(conn, order, quantity, price, now)

    async def book_fill(self, conn: Conn, order: Working, quantity: Decimal, price: Decimal, now: datetime) -> set[str]:
        """Book one fill: the position (average price on growth, reset on a flip), the cash, the fill row, the
        order's cumulative figures; then cancel its one-cancels-other partners and, once an entry has filled
        completely, release its held legs. Returns the orders this closed."""
        signed = quantity if order.side is Side.BUY else -quantity
        row = await conn.fetchrow(
            """WITH pos AS (
                   INSERT INTO sim.positions AS p (market, symbol, quantity, avg_entry_price) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (market, symbol) DO UPDATE SET quantity = p.quantity + $3, avg_entry_price = CASE
                       WHEN p.quantity = 0 OR sign(p.quantity) <> sign(p.quantity + $3) THEN $4
                       WHEN abs(p.quantity + $3) > abs(p.quantity)
                           THEN (p.avg_entry_price * abs(p.quantity) + $4 * abs($3)) / abs(p.quantity + $3)
                       ELSE p.avg_entry_price END
                   RETURNING quantity),
               paid AS (UPDATE sim.accounts SET cash = cash - $3 * $4 WHERE market = $1),
               fill AS (INSERT INTO sim.fills (fill_id, broker_order_id, symbol, side, quantity, price, filled_at)
                        SELECT $5 || '-' || (count(*) + 1), $5, $2, $6, $7, $4, $8
                        FROM sim.fills WHERE broker_order_id = $5)
               UPDATE sim.orders SET filled_quantity = filled_quantity + $7, updated_at = $8,
                      avg_fill_price = (COALESCE(avg_fill_price, 0) * filled_quantity + $7 * $4)
                                       / (filled_quantity + $7),
                      status = CASE WHEN filled_quantity + $7 = quantity THEN 'filled' ELSE 'partially_filled' END
               WHERE broker_order_id = $5
               RETURNING status, oco_group, (SELECT quantity FROM pos) AS position""",
            self.market,
            order.symbol,
            signed,
            price,
            order.broker_order_id,
            order.side.value,
            quantity,
            now,
        )
        assert row is not None
        if row["position"] == 0:
            await conn.execute("DELETE FROM sim.positions WHERE market = $1 AND symbol = $2", self.market, order.symbol)
        filled = row["status"] == "filled"
        closed = {order.broker_order_id} if filled else set()
        if row["oco_group"] is not None or filled:
            cancelled = await conn.fetchval(
                f"""WITH oco AS (UPDATE sim.orders SET status = 'cancelled', updated_at = $3
                                 WHERE $2::text IS NOT NULL AND oco_group = $2 AND broker_order_id <> $1
                                   AND status IN {OPEN}
                                 RETURNING broker_order_id),
                         released AS (UPDATE sim.orders SET status = 'accepted', updated_at = $3
                                      WHERE $4 AND parent_id = $1 AND status = 'held')
                    SELECT array_agg(broker_order_id) FROM oco""",
                order.broker_order_id,
                row["oco_group"],
                now,
                filled,
            )
            closed.update(cancelled or ())
        return closed

    async def reject(self, conn: Conn, broker_order_id: str, now: datetime) -> None:
        """Reject an order; an entry's held legs end with it."""
        await conn.execute(
            """WITH rejected AS (UPDATE sim.orders SET status = 'rejected', updated_at = $2 WHERE broker_order_id = $1)
               UPDATE sim.orders SET status = 'cancelled', updated_at = $2 WHERE parent_id = $1 AND status = 'held'""",
            broker_order_id,
            now,
        )

    async def cancel(self, conn: Conn, broker_order_id: str, now: datetime) -> bool:
        """Cancel an order that is not finished (an entry's held legs with it); False when there is no such
        order. A finished order stays as it is."""
        found = await conn.fetchval(
            f"""WITH target AS (SELECT broker_order_id, status IN {OPEN} AS open FROM sim.orders
                                WHERE market = $1 AND broker_order_id = $2 FOR UPDATE),
                     done AS (UPDATE sim.orders o SET status = 'cancelled', updated_at = $3 FROM target t
                              WHERE t.open AND (o.broker_order_id = t.broker_order_id
                                                OR (o.parent_id = t.broker_order_id AND o.status = 'held')))
                SELECT count(*) FROM target""",
            self.market,
            broker_order_id,
            now,
        )
        return bool(found)
