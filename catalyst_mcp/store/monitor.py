"""The position monitor's records: the per-market lease (one monitor watches a market; another waits), the
water marks of each open position, and one row per check of a position. A reset wipes marks and checks but
not the lease, so a reset never lets a second monitor in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.store.db import Conn

TABLES = ("monitor_checks", "monitor_marks")  # monitor_state (the lease) outlives a reset


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a market's lease and until when; ``mine`` when the caller holds it now."""

    holder: str
    until: datetime
    mine: bool


@dataclass(frozen=True, slots=True)
class MonitorState:
    market: Market
    holder: str
    lease_until: datetime
    started_at: datetime
    last_pass_at: datetime | None
    positions_watched: int
    passes: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Marks:
    high_water: Decimal
    low_water: Decimal
    pending_approval: UUID | None = None  # an exit sent without a definite answer


@dataclass(frozen=True, slots=True)
class Check:
    position_id: int
    symbol: str
    at: datetime
    last_price: Decimal | None
    high_water: Decimal | None
    low_water: Decimal | None
    strength: str
    rule: str | None
    reason: str
    action: str  # watched, closed, refused, failed
    detail: str | None = None


async def take_lease(conn: Conn, market: Market, holder: str, now: datetime, until: datetime) -> Lease:
    """Take or renew the lease of ``market`` for ``holder`` until ``until`` unless another holder's lease runs
    past ``now``; one statement, so two monitors racing for a free lease never both get it."""
    row = await conn.fetchrow(
        """INSERT INTO monitor_state AS s (market, holder, lease_until, started_at) VALUES ($1, $2, $4, $3)
           ON CONFLICT (market) DO UPDATE
               SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until,
                   started_at = CASE WHEN s.holder = EXCLUDED.holder THEN s.started_at ELSE EXCLUDED.started_at END
               WHERE s.holder = EXCLUDED.holder OR s.lease_until <= $3
           RETURNING holder, lease_until""",
        market.value,
        holder,
        now,
        until,
    )
    if row is not None:
        return Lease(row["holder"], row["lease_until"], True)
    held = await conn.fetchrow("SELECT holder, lease_until FROM monitor_state WHERE market = $1", market.value)
    assert held is not None
    return Lease(held["holder"], held["lease_until"], held["holder"] == holder and held["lease_until"] > now)


async def release_lease(conn: Conn, market: Market, holder: str, now: datetime) -> None:
    """End ``holder``'s lease now (a monitor that stops lets the next one in at once)."""
    await conn.execute(
        "UPDATE monitor_state SET lease_until = $3 WHERE market = $1 AND holder = $2 AND lease_until > $3",
        market.value,
        holder,
        now,
    )


async def record_pass(conn: Conn, market: Market, holder: str, at: datetime, watched: int, error: str | None) -> bool:
    """Record a pass (or, with ``error``, a failed one) of the lease holder; False when ``holder`` no longer
    holds the lease (nothing written)."""
    status = await conn.execute(
        """UPDATE monitor_state
           SET last_pass_at = CASE WHEN $5::text IS NULL THEN $3 ELSE last_pass_at END,
               positions_watched = CASE WHEN $5::text IS NULL THEN $4 ELSE positions_watched END,
               passes = passes + CASE WHEN $5::text IS NULL THEN 1 ELSE 0 END,
               last_error = $5
           WHERE market = $1 AND holder = $2""",
        market.value,
        holder,
        at,
        watched,
        error,
    )
    return status.endswith(" 1")


async def state(conn: Conn, market: Market) -> MonitorState | None:
    row = await conn.fetchrow("SELECT * FROM monitor_state WHERE market = $1", market.value)
    if row is None:
        return None
    return MonitorState(
        market=Market(row["market"]),
        holder=row["holder"],
        lease_until=row["lease_until"],
        started_at=row["started_at"],
        last_pass_at=row["last_pass_at"],
        positions_watched=row["positions_watched"],
        passes=row["passes"],
        last_error=row["last_error"],
    )


async def advance_marks(
    conn: Conn, market: Market, positions: Sequence[tuple[int, str, Decimal]], at: datetime
) -> dict[int, Marks]:
    """Move the water marks of each (position_id, symbol, last price) and return them; marks of positions not
    given (closed since) are dropped. One statement each way."""
    if positions:
        await conn.execute(
            """INSERT INTO monitor_marks AS m (market, position_id, symbol, high_water, low_water, updated_at)
               SELECT $1, p.id, p.symbol, p.price, p.price, $5
               FROM unnest($2::bigint[], $3::text[], $4::numeric[]) AS p(id, symbol, price)
               ON CONFLICT (market, position_id) DO UPDATE
                   SET high_water = GREATEST(m.high_water, EXCLUDED.high_water),
                       low_water = LEAST(m.low_water, EXCLUDED.low_water),
                       updated_at = EXCLUDED.updated_at""",
            market.value,
            [p[0] for p in positions],
            [p[1] for p in positions],
            [p[2] for p in positions],
            at,
        )
    await conn.execute(
        "DELETE FROM monitor_marks WHERE market = $1 AND NOT (position_id = ANY($2::bigint[]))",
        market.value,
        [p[0] for p in positions],
    )
    found = await conn.fetch(
        "SELECT position_id, high_water, low_water, pending_approval FROM monitor_marks WHERE market = $1",
        market.value,
    )
    return {r["position_id"]: Marks(r["high_water"], r["low_water"], r["pending_approval"]) for r in found}


async def set_pending(conn: Conn, market: Market, position_id: int, approval_id: UUID | None) -> None:
    """Remember the exit approved for a position before it is sent (None: it was answered for good)."""
    await conn.execute(
        "UPDATE monitor_marks SET pending_approval = $3 WHERE market = $1 AND position_id = $2",
        market.value,
        position_id,
        approval_id,
    )


async def insert_checks(conn: Conn, market: Market, checks: Sequence[Check]) -> None:
    if not checks:
        return
    await conn.executemany(
        """INSERT INTO monitor_checks (market, position_id, symbol, at, last_price, high_water, low_water, strength,
                                       rule, reason, action, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
        [
            (
                market.value,
                c.position_id,
                c.symbol,
                c.at,
                c.last_price,
                c.high_water,
                c.low_water,
                c.strength,
                c.rule,
                c.reason,
                c.action,
                c.detail,
            )
            for c in checks
        ],
    )


async def recent_exits(conn: Conn, market: Market, limit: int) -> list[Check]:
    """The latest checks that acted (closed, refused or failed), newest first."""
    rows = await conn.fetch(
        """SELECT * FROM monitor_checks WHERE market = $1 AND action <> 'watched'
           ORDER BY at DESC, check_id DESC LIMIT $2""",
        market.value,
        limit,
    )
    return [
        Check(
            position_id=r["position_id"],
            symbol=r["symbol"],
            at=r["at"],
            last_price=r["last_price"],
            high_water=r["high_water"],
            low_water=r["low_water"],
            strength=r["strength"],
            rule=r["rule"],
            reason=r["reason"],
            action=r["action"],
            detail=r["detail"],
        )
        for r in rows
    ]
