"""The simulated exchange's clock policy: simulated time runs with wall time but only through sessions."""

from __future__ import annotations

from datetime import datetime, timedelta

from catalyst_mcp.markets.profiles import MarketProfile

ANCHOR_OFFSET = timedelta(minutes=5)


def session_anchor(profile: MarketProfile, wall: datetime) -> datetime:
    """The simulated time at which a simulation started at `wall` begins.

    `wall` itself when the market is open; otherwise five minutes after the open of the most recent past
    session, so a run at night, at the weekend or on a holiday still trades inside a real session.
    """
    if profile.is_open(wall):
        return wall
    return profile.latest_session_start(wall) + ANCHOR_OFFSET


def sim_now(profile: MarketProfile, anchor_sim: datetime, anchor_wall: datetime, wall: datetime) -> datetime:
    """The simulated time at `wall`, for a simulation anchored at (`anchor_sim`, `anchor_wall`).

    Simulated time advances with wall time but consumes trading time only: at a close (or the HK lunch
    break) it continues at the next open, so the simulated market is always open. Wall time before the
    anchor counts as zero. O(log n) in the calendar's length.
    """
    elapsed = max(wall - anchor_wall, timedelta(0))
    return profile.at_trading_time(profile.trading_time(anchor_sim) + elapsed)
