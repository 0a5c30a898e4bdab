"""The simulated exchange's clock policy: simulated time runs with wall time but only through sessions."""

from __future__ import annotations

from datetime import datetime, timedelta

from catalyst_mcp.markets.profiles import MarketProfile

ANCHOR_OFFSET = timedelta(minutes=5)
# The trading day a new simulation has ahead of it at least: begun later than this before the close, it would
# refuse every entry in the last minutes (the entry cutoff) and then roll into another day.
ANCHOR_ROOM = timedelta(hours=1)


def session_anchor(profile: MarketProfile, wall: datetime) -> datetime:
    """The simulated time at which a simulation started at `wall` begins.

    `wall` itself when the market is open with at least `ANCHOR_ROOM` of its trading day left; otherwise five
    minutes after the open of the latest session begun at or before `wall`, so a run at night, at the weekend,
    on a holiday or in a session's last hour still trades with a trading day ahead of it.
    """
    if profile.is_open(wall):
        bounds = profile.session_bounds(wall.astimezone(profile.timezone).date())
        if bounds is not None and wall + ANCHOR_ROOM <= bounds[1]:
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
