"""Market profiles (sessions, ticks, lots, cycle ids), the simulated clock policy and clocks."""

from catalyst_mcp.markets.clocks import FixedClock, SystemClock
from catalyst_mcp.markets.profiles import (
    CALENDAR_FIRST_DAY,
    CALENDAR_LAST_DAY,
    CYCLE_ID_PATTERN,
    CYCLE_ID_RE,
    HK_PROFILE,
    PROFILES,
    US_PROFILE,
    MarketProfile,
    is_cycle_id,
    profile_for,
)
from catalyst_mcp.markets.simclock import session_anchor, sim_now

__all__ = [
    "CALENDAR_FIRST_DAY",
    "CALENDAR_LAST_DAY",
    "CYCLE_ID_PATTERN",
    "CYCLE_ID_RE",
    "HK_PROFILE",
    "PROFILES",
    "US_PROFILE",
    "FixedClock",
    "MarketProfile",
    "SystemClock",
    "is_cycle_id",
    "profile_for",
    "session_anchor",
    "sim_now",
]
