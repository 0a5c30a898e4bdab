"""The simulated exchange: a real adapter behind the Broker and MarketData ports.

Its account, orders and positions live in PostgreSQL (schema ``sim``), so every server process sees one
broker. Prices are a pure function of (seed, symbol, simulated time); simulated time runs with the injected
wall clock from an anchor inside a real session, stored in the database so all processes agree on it.
Outages are drilled through ``sim.faults``: an operation can fail, or answer with nothing, for the next few
calls (``inject_fault``), as a broker's API would, and for every process at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import asyncpg

from catalyst_mcp.brokers.sim_prices import Instrument, momentum_scan, quote_at, universe_for
from catalyst_mcp.domain.enums import BrokerMode, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import InvalidInput, TemporaryFailure
from catalyst_mcp.domain.models import (
    Account,
    BrokerOrder,
    BrokerPosition,
    Candidate,
    Fill,
    OrderIntent,
    Quote,
)
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.markets.simclock import session_anchor, sim_now
from catalyst_mcp.ports import Clock

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class SimExchange:
    """One simulated account per market, with market and limit orders that fill against the model's quotes.

    Resting limit orders are matched lazily whenever the account, positions or an order are read.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        profile: MarketProfile,
        *,
        seed: int,
        starting_cash: Decimal,
        wall_clock: Clock,
        follow_wall: bool = False,
    ) -> None:
        self._pool = pool
        self._profile = profile
        self._seed = seed
        self._starting_cash = starting_cash
        self._wall = wall_clock
        self._follow_wall = follow_wall
        self._anchor: tuple[datetime, datetime] | None = None
        self._universe: Mapping[str, Instrument] = universe_for(profile.market)
        self._market = profile.market.value

    name = "sim"
    tier = "simulated"

    @property
    def mode(self) -> BrokerMode:
        return BrokerMode.PAPER

    # --- clock --------------------------------------------------------------------------------------

    async def now(self) -> datetime:
        wall = self._wall.now()
        if self._follow_wall:
            return wall
        if self._anchor is None:
            self._anchor = await self._read_anchor(wall)
        return sim_now(self._profile, *self._anchor, wall)

    async def _read_anchor(self, wall: datetime) -> tuple[datetime, datetime]:
        """The simulation's (simulated, wall) anchor, shared by every process; created on first use. It never
        changes afterwards (reset keeps it), so each process reads it once."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT anchor_sim, anchor_wall FROM sim.clock WHERE market = $1", self._market)
            if row is None:
                await conn.execute(
                    """INSERT INTO sim.clock (market, anchor_sim, anchor_wall) VALUES ($1, $2, $3)
                       ON CONFLICT (market) DO NOTHING""",
                    self._market,
                    session_anchor(self._profile, wall),
                    wall,
                )
                row = await conn.fetchrow(
                    "SELECT anchor_sim, anchor_wall FROM sim.clock WHERE market = $1", self._market
                )
        assert row is not None
        return row["anchor_sim"], row["anchor_wall"]

    async def is_market_open(self) -> bool:
        return self._profile.is_open(await self.now())

    # --- market data --------------------------------------------------------------------------------

    def lot_size(self, symbol: str) -> Decimal:
        instrument = self._universe.get(symbol)
        if instrument is None:
            raise InvalidInput(f"unknown symbol {symbol}")
        return instrument.lot

    def knows(self, symbol: str) -> bool:
        return symbol in self._universe

    async def get_quote(self, symbol: str) -> Quote | None:
        instrument = self._universe.get(symbol)
        if instrument is None:
            return None
        return quote_at(self._seed, instrument, await self.now(), self._profile)

    async def scan(self, limit: int) -> list[Candidate]:
        return momentum_scan(self._seed, self._universe, await self.now(), self._profile, limit)

    # --- account ------------------------------------------------------------------------------------

    async def _ensure_account(self, conn: Conn) -> Decimal:
        await conn.execute(
            """INSERT INTO sim.accounts (market, currency, cash, starting_cash) VALUES ($1, $2, $3, $3)
               ON CONFLICT (market) DO NOTHING""",
            self._market,
            self._profile.currency,
            self._starting_cash,
        )
        cash = await conn.fetchval("SELECT cash FROM sim.accounts WHERE market = $1 FOR UPDATE", self._market)
        assert isinstance(cash, Decimal)
        return cash

    async def get_account(self) -> Account:
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._match_resting(conn, now)
            cash = await self._ensure_account(conn)
            rows = await conn.fetch("SELECT symbol, quantity FROM sim.positions WHERE market = $1", self._market)
        value = Decimal(0)
        for r in rows:
            instrument = self._universe.get(r["symbol"])
            if instrument is not None:
                value += r["quantity"] * quote_at(self._seed, instrument, now, self._profile).last
        return Account(
            cash=cash,
            equity=cash + value,
            buying_power=max(cash, Decimal(0)),
            currency=self._profile.currency,
        )

    async def get_positions(self) -> list[BrokerPosition]:
        if await self._fault("get_positions"):
            return []
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._match_resting(conn, now)
            rows = await conn.fetch(
                """SELECT symbol, quantity, avg_entry_price FROM sim.positions
                   WHERE market = $1 AND quantity <> 0 ORDER BY symbol""",
                self._market,
            )
        return [BrokerPosition(r["symbol"], r["quantity"], r["avg_entry_price"]) for r in rows]

    # --- orders -------------------------------------------------------------------------------------

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            # Serialise per account: the cash check and the fill must not interleave.
            await self._ensure_account(conn)
            existing = await self._order_row(conn, client_order_id)
            if existing is not None:
                return await self._to_order(conn, existing)
            instrument = self._universe.get(intent.symbol)
            broker_order_id = uuid.uuid4().hex
            await conn.execute(
                """INSERT INTO sim.orders (broker_order_id, market, client_order_id, symbol, side, quantity,
                       order_type, limit_price, status, submitted_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'accepted', $9, $9)""",
                broker_order_id,
                self._market,
                client_order_id,
                intent.symbol,
                intent.side.value,
                intent.quantity,
                intent.order_type.value,
                intent.limit_price,
                now,
            )
            if instrument is None:
                await self._reject(conn, broker_order_id, now)
            else:
                await self._try_fill(conn, broker_order_id, instrument, now)
            row = await self._order_row(conn, client_order_id)
            assert row is not None
            return await self._to_order(conn, row)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        if await self._fault("get_order"):
            return None
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._match_resting(conn, now)
            row = await self._order_row(conn, client_order_id)
            return None if row is None else await self._to_order(conn, row)

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._match_resting(conn, now)
            rows = await conn.fetch(
                """SELECT * FROM sim.orders
                   WHERE market = $1 AND status IN ('accepted', 'partially_filled')
                     AND ($2::text IS NULL OR symbol = $2)
                   ORDER BY submitted_at, broker_order_id""",
                self._market,
                symbol,
            )
            return [await self._to_order(conn, r) for r in rows]

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder:
        if await self._fault("cancel_order"):
            raise InvalidInput(f"unknown broker order {broker_order_id}")
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._match_resting(conn, now)
            row = await conn.fetchrow(
                """UPDATE sim.orders SET status = CASE WHEN status IN ('accepted', 'partially_filled')
                       THEN 'cancelled' ELSE status END, updated_at = $2
                   WHERE broker_order_id = $1 RETURNING *""",
                broker_order_id,
                now,
            )
            if row is None:
                raise InvalidInput(f"unknown broker order {broker_order_id}")
            return await self._to_order(conn, row)

    # --- test and operator hooks: trades made outside this system ------------------------------------

    async def set_external_position(self, symbol: str, quantity: Decimal, avg_price: Decimal) -> None:
        """Make the broker hold ``quantity`` (signed) of ``symbol``, as if traded elsewhere; 0 removes it."""
        async with self._pool.acquire() as conn:
            if quantity == 0:
                await conn.execute("DELETE FROM sim.positions WHERE market = $1 AND symbol = $2", self._market, symbol)
                return
            await conn.execute(
                """INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (market, symbol) DO UPDATE SET quantity = $3, avg_entry_price = $4""",
                self._market,
                symbol,
                quantity,
                avg_price,
            )

    async def fill_working_order(self, client_order_id: str, quantity: Decimal, price: Decimal) -> BrokerOrder:
        """Fill ``quantity`` of a working order at ``price`` now: a (partial) match arriving from the market."""
        now = await self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._ensure_account(conn)
            order = await conn.fetchrow(
                """SELECT * FROM sim.orders WHERE market = $1 AND client_order_id = $2
                   AND status IN ('accepted', 'partially_filled') AND quantity - filled_quantity >= $3 FOR UPDATE""",
                self._market,
                client_order_id,
                quantity,
            )
            if order is None or quantity <= 0:
                raise InvalidInput(f"order {client_order_id} has no {quantity} shares left to fill")
            row = await self._book_fill(conn, order, quantity, price, now)
            assert row is not None
            return await self._to_order(conn, row)

    async def inject_fault(self, operation: str, kind: str = "error", times: int | None = None) -> None:
        """Make ``operation`` (get_positions, get_order, cancel_order) fail (``error``) or answer
        with nothing (``empty``) for the next ``times`` calls, or until ``clear_faults`` when None."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO sim.faults (market, operation, kind, remaining) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (market, operation) DO UPDATE SET kind = $3, remaining = $4""",
                self._market,
                operation,
                kind,
                times,
            )

    async def clear_faults(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM sim.faults WHERE market = $1", self._market)

    # --- internals ----------------------------------------------------------------------------------

    async def _fault(self, operation: str) -> bool:
        """Consume one injected fault: raises for ``error``, True for ``empty``, False when none is set."""
        async with self._pool.acquire() as conn:
            kind = await conn.fetchval(
                """WITH hit AS (SELECT kind, remaining FROM sim.faults WHERE market = $1 AND operation = $2
                                FOR UPDATE),
                        spent AS (DELETE FROM sim.faults f USING hit
                                  WHERE f.market = $1 AND f.operation = $2 AND hit.remaining = 1),
                        used AS (UPDATE sim.faults f SET remaining = f.remaining - 1 FROM hit
                                 WHERE f.market = $1 AND f.operation = $2 AND hit.remaining > 1)
                   SELECT kind FROM hit""",
                self._market,
                operation,
            )
        if kind == "error":
            raise TemporaryFailure(f"the simulated broker is unavailable ({operation} failed)")
        return bool(kind == "empty")

    async def _order_row(self, conn: Conn, client_order_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow("SELECT * FROM sim.orders WHERE client_order_id = $1", client_order_id)

    async def _to_order(self, conn: Conn, row: asyncpg.Record) -> BrokerOrder:
        fills = await conn.fetch(
            "SELECT * FROM sim.fills WHERE broker_order_id = $1 ORDER BY filled_at, fill_id",
            row["broker_order_id"],
        )
        return BrokerOrder(
            broker_order_id=row["broker_order_id"],
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=Side(row["side"]),
            quantity=row["quantity"],
            order_type=OrderType(row["order_type"]),
            limit_price=row["limit_price"],
            status=OrderStatus(row["status"]),
            filled_quantity=row["filled_quantity"],
            avg_fill_price=row["avg_fill_price"],
            submitted_at=row["submitted_at"],
            fills=tuple(
                Fill(
                    f["fill_id"],
                    f["broker_order_id"],
                    f["symbol"],
                    Side(f["side"]),
                    f["quantity"],
                    f["price"],
                    f["filled_at"],
                )
                for f in fills
            ),
        )

    async def _reject(self, conn: Conn, broker_order_id: str, now: datetime) -> None:
        await conn.execute(
            "UPDATE sim.orders SET status = 'rejected', updated_at = $2 WHERE broker_order_id = $1",
            broker_order_id,
            now,
        )

    async def _match_resting(self, conn: Conn, now: datetime) -> None:
        rows = await conn.fetch(
            """SELECT broker_order_id, symbol FROM sim.orders
               WHERE market = $1 AND status IN ('accepted', 'partially_filled')
               ORDER BY submitted_at FOR UPDATE""",
            self._market,
        )
        for r in rows:
            instrument = self._universe.get(r["symbol"])
            if instrument is not None:
                await self._try_fill(conn, r["broker_order_id"], instrument, now)

    async def _try_fill(self, conn: Conn, broker_order_id: str, instrument: Instrument, now: datetime) -> None:
        """Fill an open order completely if its price is reachable; reject it if the account can't pay."""
        order = await conn.fetchrow("SELECT * FROM sim.orders WHERE broker_order_id = $1", broker_order_id)
        assert order is not None
        quote = quote_at(self._seed, instrument, now, self._profile)
        side = Side(order["side"])
        price = quote.ask if side is Side.BUY else quote.bid
        limit = order["limit_price"]
        if (
            order["order_type"] == OrderType.LIMIT.value
            and limit is not None
            and ((side is Side.BUY and limit < price) or (side is Side.SELL and limit > price))
        ):
            return
        qty: Decimal = order["quantity"] - order["filled_quantity"]
        cash = await self._ensure_account(conn)
        held = await conn.fetchval(
            "SELECT quantity FROM sim.positions WHERE market = $1 AND symbol = $2 FOR UPDATE",
            self._market,
            instrument.symbol,
        )
        held_qty: Decimal = held if held is not None else Decimal(0)
        if side is Side.BUY and qty * price > cash:
            await self._reject(conn, broker_order_id, now)
            return
        if side is Side.SELL and qty > held_qty:
            await self._reject(conn, broker_order_id, now)  # the simulated account cannot short
            return
        await self._book_fill(conn, order, qty, price, now)

    async def _book_fill(
        self, conn: Conn, order: asyncpg.Record, quantity: Decimal, price: Decimal, now: datetime
    ) -> asyncpg.Record:
        """Book one fill of ``order``: the position (average price on growth, reset on a flip), the cash, the
        fill row, and the order's filled quantity, average price and status. Returns the updated order."""
        signed = quantity if order["side"] == Side.BUY.value else -quantity
        await conn.execute(
            """INSERT INTO sim.positions AS p (market, symbol, quantity, avg_entry_price) VALUES ($1, $2, $3, $4)
               ON CONFLICT (market, symbol) DO UPDATE SET quantity = p.quantity + $3, avg_entry_price = CASE
                   WHEN p.quantity = 0 OR sign(p.quantity) <> sign(p.quantity + $3) THEN $4
                   WHEN abs(p.quantity + $3) > abs(p.quantity)
                       THEN (p.avg_entry_price * abs(p.quantity) + $4 * abs($3)) / abs(p.quantity + $3)
                   ELSE p.avg_entry_price END""",
            self._market,
            order["symbol"],
            signed,
            price,
        )
        await conn.execute("DELETE FROM sim.positions WHERE market = $1 AND quantity = 0", self._market)
        await conn.execute("UPDATE sim.accounts SET cash = cash - $2 WHERE market = $1", self._market, signed * price)
        await conn.execute(
            """INSERT INTO sim.fills (fill_id, broker_order_id, symbol, side, quantity, price, filled_at)
               SELECT $1 || '-' || (count(*) + 1), $1, $2, $3, $4, $5, $6
               FROM sim.fills WHERE broker_order_id = $1""",
            order["broker_order_id"],
            order["symbol"],
            order["side"],
            quantity,
            price,
            now,
        )
        row = await conn.fetchrow(
            """UPDATE sim.orders SET filled_quantity = filled_quantity + $2, updated_at = $4,
                      avg_fill_price = (COALESCE(avg_fill_price, 0) * filled_quantity + $2 * $3)
                                       / (filled_quantity + $2),
                      status = CASE WHEN filled_quantity + $2 = quantity THEN 'filled' ELSE 'partially_filled' END
               WHERE broker_order_id = $1 RETURNING *""",
            order["broker_order_id"],
            quantity,
            price,
            now,
        )
        assert row is not None
        return row


async def reset_simulation(conn: Conn) -> None:
    """Wipe the simulated broker and the book (``catalyst-mcp reset``). The simulated clock is kept, so servers
    still running agree with new ones on the simulated time."""
    await conn.execute(
        """TRUNCATE sim.fills, sim.orders, sim.positions, sim.accounts, sim.faults,
                    fills, orders, risk_decisions, positions, sync_runs, decisions, cycle_events, cycles,
                    equity_marks, audit_events RESTART IDENTITY CASCADE"""
    )
    await conn.execute("UPDATE trading_state SET state = 'active', reason = NULL, changed_at = now()")
