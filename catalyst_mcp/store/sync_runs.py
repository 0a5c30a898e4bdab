"""Sync runs: each sync_positions call, applied, refused or dry, with its plan."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.store.db import Conn

TABLES = ("sync_runs",)


async def insert(
    conn: Conn,
    *,
    cycle_id: str | None,
    market: Market,
    dry_run: bool,
    forced: bool,
    applied: bool,
    refused: str | None,
    plan: list[dict[str, Any]],
    at: datetime,
) -> int:
    value = await conn.fetchval(
        """INSERT INTO sync_runs (cycle_id, market, dry_run, forced, applied, refused, plan, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING sync_id""",
        cycle_id,
        market.value,
        dry_run,
        forced,
        applied,
        refused,
        plan,
        at,
    )
    return int(value)
