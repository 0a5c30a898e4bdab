"""The simulated exchange: a real adapter behind the Broker and MarketData ports.

Its account, orders and positions live in PostgreSQL (schema ``sim``), so every server process sees one
broker. Prices are a pure function of (seed, symbol, simulated time), unless an operator pinned a symbol's price
(``sim.prices``); simulated time runs with the injected wall clock from an anchor inside a real session, stored in
the database so all processes agree on it. Orders carry protective legs as Alpaca's do. Outages are drilled
through ``sim.faults`` (see ``sim_faults``); the operator's controls are ``sim_controls.SimControls``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg

from catalyst_mcp.brokers import sim_placing
from catalyst_mcp.brokers.sim_bars import daily_bars, intraday_bars
from catalyst_mcp.brokers.sim_book import Conn, SimBook
from catalyst_mcp.brokers.sim_faults import FaultMode, FaultOp, mode_of, refuse_after, refuse_before, with_fault
from catalyst_mcp.brokers.sim_orders import OPEN, decode_order, decode_orders, order_value
from catalyst_mcp.brokers.sim_prices import scan_row
from catalyst_mcp.domain.enums import BrokerMode, Side
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, OrderIntent, Quote
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.markets.simclock import session_anchor, sim_now
from catalyst_mcp.ports import Clock
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow

_POSITIONS = """(SELECT array_agg(ROW(symbol, quantity, avg_entry_price) ORDER BY symbol)
                 FROM sim.positions WHERE market = $1 AND quantity <> 0)"""
# The same positions as three parallel arrays (symbols, quantities, prices): decoding plain arrays costs a
# fraction of decoding one anonymous record per position, which matters for a snapshot of 100,000.
_POSITION_ARRAYS = ", ".join(
    f"""(SELECT array_agg({column} ORDER BY symbol) FROM sim.positions
         WHERE market = $1 AND quantity <> 0) AS held_{column}"""
    for column in ("symbol", "quantity", "avg_entry_price")
)


class SimExchange:
    """One simulated account per market: market, limit and stop orders that fill against the quotes.

    Resting orders are matched lazily whenever the account, positions or orders are read, and on submit.
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
        self._market = profile.market.value
        self._book = SimBook(pool, profile, seed=seed, starting_cash=starting_cash)

    name = "sim"
    source = "simulated"

    @property
    def mode(self) -> BrokerMode:
        return BrokerMode.PAPER

    @property
    def book(self) -> SimBook:
        """The books behind this exchange, for its operator's controls (``SimControls``)."""
        return self._book

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
        instrument = self._book.instrument(symbol)
        if instrument is None:
            raise InvalidInput(f"unknown symbol {symbol}")
        return instrument.lot

    async def get_quote(self, symbol: str) -> Quote | None:
        """One round trip: the fault and the symbol's pinned price in one statement."""
        now = await self.now()
        clause, fault = with_fault(FaultOp.QUOTE)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"""{clause} SELECT {fault} AS fault,
                       (SELECT price FROM sim.prices WHERE market = $1 AND symbol = $2) AS pin""",
                self._market,
                symbol,
            )
        assert row is not None
        mode = mode_of(row["fault"])
        refuse_before(FaultOp.QUOTE, mode)
        instrument = self._book.instrument(symbol)
        quote = None if instrument is None else self._book.quote(instrument, now, row["pin"])
        refuse_after(FaultOp.QUOTE, mode)
        return None if mode is FaultMode.EMPTY else quote

    async def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """One round trip for all of them: the fault and the pinned prices in one statement."""
        now = await self.now()
        clause, fault = with_fault(FaultOp.QUOTE)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"""{clause} SELECT {fault} AS fault,
                       ARRAY(SELECT ROW(symbol, price) FROM sim.prices
                             WHERE market = $1 AND symbol = ANY($2::text[])) AS pins""",
                self._market,
                list(symbols),
            )
        assert row is not None
        mode = mode_of(row["fault"])
        refuse_before(FaultOp.QUOTE, mode)
        pins = {symbol: price for symbol, price in row["pins"]}
        quotes = {}
        for symbol in symbols:
            instrument = self._book.instrument(symbol)
            if instrument is not None:
                quotes[symbol] = self._book.quote(instrument, now, pins.get(symbol))
        refuse_after(FaultOp.QUOTE, mode)
        return {} if mode is FaultMode.EMPTY else quotes

    async def get_bars(self, symbol: str, size: BarSize, count: int) -> list[Bar]:
        """Bars from the same price path as the quotes (a pinned price moves quotes, not bars)."""
        instrument = self._book.instrument(symbol)
        if instrument is None:
            return []
        now = await self.now()
        if size is BarSize.DAY:
            return daily_bars(self._seed, instrument, now, self._profile, count)
        minutes = int(size.duration.total_seconds()) // 60
        return intraday_bars(self._seed, instrument, now, self._profile, minutes, count)

    async def scan_rows(self, symbols: Sequence[str] | None = None) -> list[ScanRow]:
        """From the same price path as the quotes and bars, read with ``get_quotes`` (so a pinned price and a
        quote fault apply as they do to quotes)."""
        wanted = list(self._book.universe) if symbols is None else [s for s in symbols if self._book.instrument(s)]
        quotes = await self.get_quotes(wanted)
        rows = []
        for symbol in wanted:
            instrument, quote = self._book.instrument(symbol), quotes.get(symbol)
            if instrument is not None and quote is not None:
                rows.append(scan_row(self._seed, instrument, quote.at, self._profile, quote))
        return rows

    # --- account ------------------------------------------------------------------------------------

    async def get_account(self) -> Account:
        now = await self.now()
        row = await self._book.read(
            FaultOp.GET_ACCOUNT,
            f"(SELECT cash FROM sim.accounts WHERE market = $1) AS cash, {_POSITIONS} AS positions",
            (),
            now,
        )
        return self.account_of(row, now)

    def account_of(self, row: asyncpg.Record, now: datetime) -> Account:
        """The account from a row with ``cash`` (None before the first write), ``positions`` and ``pins``."""
        cash: Decimal = self._starting_cash if row["cash"] is None else row["cash"]
        pins = dict(row["pins"] or ())
        value = Decimal(0)
        for symbol, quantity, _ in row["positions"] or ():
            instrument = self._book.instrument(symbol)
            if instrument is not None:
                value += quantity * self._book.quote(instrument, now, pins.get(symbol)).last
        return Account(
            cash=cash, equity=cash + value, buying_power=max(cash, Decimal(0)), currency=self._profile.currency
        )

    async def get_positions(self) -> list[BrokerPosition]:
        row = await self._book.read(FaultOp.GET_POSITIONS, _POSITION_ARRAYS, (), await self.now())
        if row is None:
            return []
        columns = (row["held_symbol"] or (), row["held_quantity"] or (), row["held_avg_entry_price"] or ())
        return list(map(BrokerPosition, *columns))

    # --- orders -------------------------------------------------------------------------------------

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        now = await self.now()

        async def submit(conn: Conn, cash: Decimal) -> BrokerOrder:
            order = await sim_placing.submit(self._book, conn, cash, intent, client_order_id, now)
            return order.to_broker()

        return await self._book.write(FaultOp.SUBMIT, submit)

    async def protect(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        client_order_id: str,
    ) -> list[BrokerOrder]:
        now = await self.now()

        async def place(conn: Conn, cash: Decimal) -> list[BrokerOrder]:
            orders = await sim_placing.protect(
                self._book, conn, symbol, side, quantity, stop_loss, take_profit, client_order_id, now
            )
            return [o.to_broker() for o in orders]

        return await self._book.write(FaultOp.SUBMIT, place)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        row = await self._book.read(
            FaultOp.GET_ORDER,
            f"""(SELECT {order_value("o")} FROM sim.orders o
                 WHERE o.market = $1 AND o.client_order_id = $2) AS target""",
            (client_order_id,),
            await self.now(),
        )
        if row is None or row["target"] is None:
            return None
        return decode_order(row["target"]).to_broker()

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        row = await self._book.read(
            FaultOp.GET_ORDERS,
            f"""(SELECT array_agg({order_value("o")}
                                  ORDER BY o.submitted_at, o.parent_id NULLS FIRST, o.client_order_id)
                 FROM sim.orders o WHERE o.market = $1 AND o.status IN {OPEN}
                   AND ($2::text IS NULL OR o.symbol = $2)) AS open""",
            (symbol,),
            await self.now(),
        )
        return [] if row is None else [o.to_broker() for o in decode_orders(row["open"])]

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder:
        now = await self.now()

        async def cancel(conn: Conn, cash: Decimal) -> BrokerOrder:
            await self._book.match(conn, now)
            if not await self._book.cancel(conn, broker_order_id, now):
                raise InvalidInput(f"unknown broker order {broker_order_id}")
            [order] = await self._book.load(conn, "o.broker_order_id = $2", broker_order_id)
            return order.to_broker()

        return await self._book.write(FaultOp.CANCEL, cancel)


async def reset_simulation(conn: Conn) -> None:
    """Wipe the simulated broker (``catalyst-mcp reset``, with the book). The simulated clock is kept, so
    servers still running agree with new ones on the simulated time."""
    await conn.execute(
        "TRUNCATE sim.fills, sim.orders, sim.positions, sim.accounts, sim.faults, sim.prices RESTART IDENTITY CASCADE"
    )
