"""``catalyst-mcp agent --schedule``: cycles through the trading day, driven by the market's calendar.

Each trading day: a scan cycle before the open, a trade cycle every ``trade_every`` inside the sessions (both of
Hong Kong's, none in its lunch break), a close cycle before the close (early closes included), and heartbeats in
between. Nights, weekends and holidays are slept through. One action at a time, so two cycles never overlap; a
failed cycle is reported and the schedule goes on. The clock and the waits are injected: the tests drive a whole
simulated week without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import anyio

from catalyst_mcp.markets.profiles import MarketProfile

logger = logging.getLogger(__name__)

# How far ahead a next trading day is looked for (the longest run of holidays and weekends is far shorter).
HORIZON_DAYS = 21
# A long wait is cut into pieces this long, so a changed wall clock (a suspended host) is noticed.
MAX_WAIT = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ScheduleTimes:
    scan_before_open: timedelta = timedelta(minutes=15)
    trade_every: timedelta = timedelta(minutes=15)
    close_before_close: timedelta = timedelta(minutes=15)
    heartbeat_every: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Slot:
    """One scheduled action: due ``at``; no longer worth running from ``until`` on (its moment has passed)."""

    at: datetime
    until: datetime
    mode: str


def day_slots(profile: MarketProfile, day: date, times: ScheduleTimes) -> list[Slot]:
    """The cycles of one trading day (none for a holiday or a weekend), in order."""
    intervals = profile.session_intervals(day)
    if not intervals:
        return []
    opens, closes = intervals[0][0], intervals[-1][1]
    close_at = max(closes - times.close_before_close, opens)
    slots = [Slot(opens - times.scan_before_open, opens, "scan")]
    trades: list[tuple[datetime, datetime]] = []
    for start, end in intervals:
        at = start
        while at < min(end, close_at):
            trades.append((at, min(end, close_at)))
            at += times.trade_every
    for i, (at, interval_end) in enumerate(trades):
        following = trades[i + 1][0] if i + 1 < len(trades) else close_at
        slots.append(Slot(at, min(following, interval_end), "trade"))
    slots.append(Slot(close_at, closes, "close"))
    return slots


def day_window(profile: MarketProfile, day: date, times: ScheduleTimes) -> tuple[datetime, datetime] | None:
    """From the scan before the open to the close: when heartbeats are sent between cycles."""
    bounds = profile.session_bounds(day)
    if bounds is None:
        return None
    return bounds[0] - times.scan_before_open, bounds[1]


@dataclass(frozen=True, slots=True)
class Planner:
    profile: MarketProfile
    times: ScheduleTimes = ScheduleTimes()

    def next_slot(self, now: datetime, after: datetime | None) -> Slot:
        """The first cycle not yet run (later than ``after``) whose moment has not passed."""
        today = now.astimezone(self.profile.timezone).date()
        for offset in range(-1, HORIZON_DAYS):
            for slot in day_slots(self.profile, today + timedelta(days=offset), self.times):
                if (after is None or slot.at > after) and slot.until > now:
                    return slot
        raise ValueError(f"no {self.profile.market.value} trading day within {HORIZON_DAYS} days of {today}")

    def in_window(self, now: datetime) -> bool:
        today = now.astimezone(self.profile.timezone).date()
        window = day_window(self.profile, today, self.times)
        return window is not None and window[0] <= now < window[1]

    def next_action(self, now: datetime, after: datetime | None, last_beat: datetime | None) -> Slot:
        """What to do next and when: the next cycle, or a heartbeat due before it inside the trading day."""
        slot = self.next_slot(now, after)
        if slot.at <= now or not self.in_window(now):
            return slot
        beat_at = now if last_beat is None else max(now, last_beat + self.times.heartbeat_every)
        if beat_at < slot.at:
            return Slot(beat_at, slot.at, "heartbeat")
        return slot


RunMode = Callable[[str], Awaitable[int]]


@dataclass
class Scheduler:
    """Runs the planner's actions one at a time until ``stop`` is set. ``run_mode`` runs one cycle (or a
    heartbeat) and returns its exit code; ``wait`` waits for a number of seconds or until ``stop``."""

    planner: Planner
    run_mode: RunMode
    now: Callable[[], datetime]
    wait: Callable[[float], Awaitable[None]]
    say: Callable[[str], None]
    stop: anyio.Event = field(default_factory=anyio.Event)
    _current: anyio.CancelScope | None = None

    def request_stop(self) -> None:
        """Stop: the action under way is cancelled (a Claude cycle is then closed as failed), none starts."""
        self.stop.set()
        if self._current is not None:
            self._current.cancel()

    async def run(self) -> int:
        last_slot: datetime | None = None
        last_beat: datetime | None = None
        announced: datetime | None = None
        while not self.stop.is_set():
            now = self.now()
            action = self.planner.next_action(now, last_slot, last_beat)
            if action.at > now:
                if action.mode != "heartbeat" and announced != action.at:
                    self.say(f"next: {action.mode} cycle at {action.at.isoformat()}")
                    announced = action.at
                await self.wait(min((action.at - now).total_seconds(), MAX_WAIT.total_seconds()))
                continue
            code = await self._run(action.mode)
            if action.mode == "heartbeat":
                last_beat = now
            else:
                last_slot = action.at
                if code != 0 and not self.stop.is_set():
                    self.say(
                        f"the {action.mode} cycle due at {action.at.isoformat()} failed (exit {code});"
                        " the schedule goes on"
                    )
        self.say("schedule stopped")
        return 0

    async def _run(self, mode: str) -> int:
        with anyio.CancelScope() as scope:
            self._current = scope
            try:
                return await self.run_mode(mode)
            except Exception:  # a failed cycle never stops the schedule
                logger.exception("the %s run failed", mode)
                return 1
            finally:
                self._current = None
        return 1  # cancelled by a stop
