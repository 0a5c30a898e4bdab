"""What the broker last said of the account and of a symbol's quote, kept per market (ADR 0012).

A view is read back in the risk snapshot's statement (``book_snapshot``) only while it is younger than its
reuse window and nothing it depends on moved: the account's book version and epoch, the quote's epoch.
Booking a fill carries the account view to the book's next version (``carry_sql``, in the statement of
``orders.record_answer``); the simulated exchange's controls move the epoch (triggers of migration 0011). A
lost view is only a broker read more, so a view is committed without waiting for the WAL flush."""

from __future__ import annotations

from datetime import datetime

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.models import Account, Quote
from catalyst_mcp.store.db import Conn

TABLES = ("account_views", "quote_views")

_KEEP = """
WITH account AS (
    INSERT INTO account_views AS v (market, cash, equity, buying_power, last_equity, currency, read_at, version,
                                    epoch)
    SELECT $1, $5, $6, $7, $8, $9, $2, $3, $4 WHERE $6::numeric IS NOT NULL
    ON CONFLICT (market) DO UPDATE SET cash = EXCLUDED.cash, equity = EXCLUDED.equity,
        buying_power = EXCLUDED.buying_power, last_equity = EXCLUDED.last_equity, currency = EXCLUDED.currency,
        read_at = EXCLUDED.read_at, version = EXCLUDED.version, epoch = EXCLUDED.epoch),
quote AS (
    INSERT INTO quote_views AS q (market, symbol, bid, ask, last, bid_size, ask_size, quoted_at, read_at, epoch)
    SELECT $1, $10, $11, $12, $13, $14, $15, $16, $2, $4 WHERE $10::text IS NOT NULL
    ON CONFLICT (market, symbol) DO UPDATE SET bid = EXCLUDED.bid, ask = EXCLUDED.ask, last = EXCLUDED.last,
        bid_size = EXCLUDED.bid_size, ask_size = EXCLUDED.ask_size, quoted_at = EXCLUDED.quoted_at,
        read_at = EXCLUDED.read_at, epoch = EXCLUDED.epoch)
SELECT set_config('synchronous_commit', 'off', true)
"""


async def keep(
    conn: Conn,
    market: Market,
    *,
    read_at: datetime,
    version: int,
    epoch: int,
    account: Account | None,
    quote: Quote | None,
) -> None:
    """Keep what was just read from the broker (either may be None), as of ``read_at`` (when the reads
    started), for the book's ``version`` and ``epoch`` read under the same hold of the lane."""
    await conn.execute(
        _KEEP,
        market.value,
        read_at,
        version,
        epoch,
        *(
            (None,) * 5
            if account is None
            else (account.cash, account.equity, account.buying_power, account.last_equity, account.currency)
        ),
        *(
            (None,) * 7
            if quote is None
            else (quote.symbol, quote.bid, quote.ask, quote.last, quote.bid_size, quote.ask_size, quote.at)
        ),
    )


def carry_sql(market: str, fills: str, *, when: str) -> str:
    """The UPDATE that carries the account view of the market given by the SQL expression ``market`` from the
    book's current version to the next one, only ``when`` that SQL condition holds (the version is bumped in
    the same statement): the cost of the buys among ``fills`` (a SQL row source of ``side``, ``qty`` and
    ``price``) is taken from its cash and buying power. A sell's proceeds are not added: until the broker is
    asked again the view errs on the safe side."""
    return f"""UPDATE account_views v SET version = v.version + 1, cash = v.cash - s.spent,
                      buying_power = v.buying_power - s.spent
               FROM (SELECT COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'buy'), 0) AS spent
                     FROM {fills}) s
               WHERE v.market = {market} AND {when}
                 AND v.version = (SELECT version FROM book_versions WHERE market = {market})"""
