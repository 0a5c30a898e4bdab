"""The agent's model spend: tokens and US dollars per UTC day, agent and model (``agent_spend``).

Each response is added in one statement, so concurrent agents never lose each other's spend; the daily budget
is read as the day's sum over every agent. A reset of the book keeps these rows: the money was spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from catalyst_mcp.store.db import Conn, Database

TABLES: tuple[str, ...] = ()  # kept by a wipe of the book


@dataclass(frozen=True, slots=True)
class DaySpend:
    """One UTC day's model calls, summed over agents and models."""

    day: date
    usd: Decimal = Decimal(0)
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0


async def add(
    conn: Conn,
    *,
    day: date,
    agent_id: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int,
    cache_read_tokens: int,
    usd: Decimal,
    at: datetime,
) -> None:
    """Add one model call to the day's row of this agent and model."""
    await conn.execute(
        """INSERT INTO agent_spend AS s (day, agent_id, model, calls, input_tokens, output_tokens,
                                         cache_write_tokens, cache_read_tokens, usd, updated_at)
           VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (day, agent_id, model) DO UPDATE SET
               calls = s.calls + 1,
               input_tokens = s.input_tokens + EXCLUDED.input_tokens,
               output_tokens = s.output_tokens + EXCLUDED.output_tokens,
               cache_write_tokens = s.cache_write_tokens + EXCLUDED.cache_write_tokens,
               cache_read_tokens = s.cache_read_tokens + EXCLUDED.cache_read_tokens,
               usd = s.usd + EXCLUDED.usd,
               updated_at = GREATEST(s.updated_at, EXCLUDED.updated_at)""",
        day,
        agent_id,
        model,
        input_tokens,
        output_tokens,
        cache_write_tokens,
        cache_read_tokens,
        usd,
        at,
    )


async def day_total(conn: Conn, day: date) -> DaySpend:
    """The day's spend over every agent and model (zero when nothing was spent)."""
    row = await conn.fetchrow(
        """SELECT COALESCE(sum(usd), 0) AS usd, COALESCE(sum(calls), 0) AS calls,
                  COALESCE(sum(input_tokens), 0) AS input_tokens, COALESCE(sum(output_tokens), 0) AS output_tokens,
                  COALESCE(sum(cache_write_tokens), 0) AS cache_write_tokens,
                  COALESCE(sum(cache_read_tokens), 0) AS cache_read_tokens
           FROM agent_spend WHERE day = $1""",
        day,
    )
    assert row is not None
    return DaySpend(
        day=day,
        usd=Decimal(row["usd"]),
        calls=int(row["calls"]),
        input_tokens=int(row["input_tokens"]),
        output_tokens=int(row["output_tokens"]),
        cache_write_tokens=int(row["cache_write_tokens"]),
        cache_read_tokens=int(row["cache_read_tokens"]),
    )


class SpendLedger:
    """The agent's spend book over the request pool (what ``agent/budget.py``'s ``SpendBook`` asks for)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def spent(self, day: date) -> Decimal:
        async with self._db.connection() as conn:
            return (await day_total(conn, day)).usd

    async def add(
        self,
        *,
        day: date,
        agent_id: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_write_tokens: int,
        cache_read_tokens: int,
        usd: Decimal,
        at: datetime,
    ) -> Decimal:
        """Add one call; returns the day's total after it."""
        async with self._db.transaction() as conn:
            await add(
                conn,
                day=day,
                agent_id=agent_id,
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_write_tokens=cache_write_tokens,
                cache_read_tokens=cache_read_tokens,
                usd=usd,
                at=at,
            )
            return (await day_total(conn, day)).usd
