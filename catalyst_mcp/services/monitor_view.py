"""The position monitor as workflow_status shows it: its lease, its last pass and its latest exits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.store import monitor as store
from catalyst_mcp.store.db import Conn
from catalyst_mcp.store.monitor import Check, MonitorState

RECENT_EXITS: Final = 10  # the exits workflow_status shows


@dataclass(frozen=True, slots=True)
class MonitorView:
    """The monitor of a market as workflow_status shows it."""

    holder: str
    running: bool  # its lease has not ended
    started_at: datetime
    last_pass_at: datetime | None
    positions_watched: int
    passes: int
    last_error: str | None
    exits: tuple[Check, ...]


async def view(conn: Conn, market: Market, now: datetime) -> MonitorView | None:
    """The monitor's state and its latest exits; None when no monitor ever ran on ``market``."""
    found: MonitorState | None = await store.state(conn, market)
    if found is None:
        return None
    exits = await store.recent_exits(conn, market, RECENT_EXITS)
    return MonitorView(
        holder=found.holder,
        running=found.lease_until > now,
        started_at=found.started_at,
        last_pass_at=found.last_pass_at,
        positions_watched=found.positions_watched,
        passes=found.passes,
        last_error=found.last_error,
        exits=tuple(exits),
    )
