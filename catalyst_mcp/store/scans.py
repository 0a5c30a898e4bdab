"""Scans: each scan_market call with its cycle, the tier it used and the candidates it returned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.signals.scanner import ScanCandidate, ScanResult
from catalyst_mcp.store.db import Conn

TABLES = ("scans",)

_COLUMNS = """scan_id, market, cycle_id, at, source, tier, tier_level, tier_count, considered, passed_filters,
              qualified, candidates"""


@dataclass(frozen=True, slots=True)
class ScanRecord:
    scan_id: int
    market: Market
    cycle_id: str | None
    at: datetime
    source: str
    tier: str | None  # None: no tier found anything
    tier_level: int | None
    tier_count: int
    considered: int
    passed_filters: int
    qualified: int
    candidates: tuple[dict[str, Any], ...]  # as returned, decimals as plain strings


def candidate_json(c: ScanCandidate) -> dict[str, Any]:
    def text(value: Any) -> Any:
        return None if value is None else plain(value)

    return {
        "symbol": c.symbol,
        "price": text(c.price),
        "change_pct": text(c.change_pct),
        "gap_pct": text(c.gap_pct),
        "volume": text(c.volume),
        "relative_volume": text(c.relative_volume),
        "spread_pct": text(c.spread_pct),
        "score": text(c.score),
    }


async def insert(
    conn: Conn, *, market: Market, cycle_id: str | None, at: datetime, source: str, result: ScanResult
) -> int:
    value = await conn.fetchval(
        """INSERT INTO scans (market, cycle_id, at, source, tier, tier_level, tier_count, considered,
                              passed_filters, qualified, candidates)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING scan_id""",
        market.value,
        cycle_id,
        at,
        source,
        result.tier.name if result.tier is not None else None,
        result.level,
        result.tier_count,
        result.considered,
        result.passed_filters,
        result.qualified,
        [candidate_json(c) for c in result.candidates],
    )
    return int(value)


def _record(row: asyncpg.Record) -> ScanRecord:
    return ScanRecord(
        scan_id=row["scan_id"],
        market=Market(row["market"]),
        cycle_id=row["cycle_id"],
        at=row["at"],
        source=row["source"],
        tier=row["tier"],
        tier_level=row["tier_level"],
        tier_count=row["tier_count"],
        considered=row["considered"],
        passed_filters=row["passed_filters"],
        qualified=row["qualified"],
        candidates=tuple(row["candidates"]),
    )


async def of_cycle(conn: Conn, cycle_id: str) -> list[ScanRecord]:
    """The scans of a cycle, oldest first."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM scans WHERE cycle_id = $1 ORDER BY scan_id", cycle_id)
    return [_record(r) for r in rows]


async def recent(conn: Conn, market: Market, limit: int = 20) -> list[ScanRecord]:
    """The latest scans of a market, newest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM scans WHERE market = $1 ORDER BY at DESC, scan_id DESC LIMIT $2", market.value, limit
    )
    return [_record(r) for r in rows]
