"""``agent --schedule`` on a simulated clock: whole trading weeks of the US and Hong Kong calendars (a lunch break,
early closes, holidays, a weekend) run in milliseconds, with waits that move the clock instead of sleeping."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

from catalyst_mcp.agent.schedule import Planner, Scheduler, ScheduleTimes, day_slots
from catalyst_mcp.markets.profiles import profile_for

NEW_YORK = ZoneInfo("America/New_York")
HONG_KONG = ZoneInfo("Asia/Hong_Kong")
TIMES = ScheduleTimes(
    scan_before_open=timedelta(minutes=15),
    trade_every=timedelta(minutes=30),
    close_before_close=timedelta(minutes=15),
    heartbeat_every=timedelta(minutes=10),
)


@dataclass
class Run:
    start: datetime
    end: datetime
    mode: str


@dataclass
class SimulatedDay:
    """A clock that waits by jumping, and an agent whose runs take ``duration`` of it."""

    now: datetime
    end: datetime
    duration: Callable[[str, datetime], timedelta] = lambda mode, at: timedelta(minutes=2)
    outcome: Callable[[str, datetime], int] = lambda mode, at: 0
    runs: list[Run] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    scheduler: Scheduler | None = None

    def clock(self) -> datetime:
        return self.now

    async def wait(self, seconds: float) -> None:
        assert seconds > 0
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        if self.now >= self.end:
            assert self.scheduler is not None
            self.scheduler.request_stop()

    async def run_mode(self, mode: str) -> int:
        start = self.now
        self.now += self.duration(mode, start)
        self.runs.append(Run(start, self.now, mode))
        return self.outcome(mode, start)

    async def play(self, planner: Planner) -> int:
        self.scheduler = Scheduler(planner, self.run_mode, self.clock, self.wait, self.said.append)
        with anyio.fail_after(10):  # the whole simulated span, in real time
            return await self.scheduler.run()

    def cycles(self, zone: ZoneInfo) -> list[tuple[str, str]]:
        """(local start "YYYY-MM-DD HH:MM", mode) of the cycles, heartbeats left out."""
        cycles = [r for r in self.runs if r.mode != "heartbeat"]
        return [(r.start.astimezone(zone).strftime("%Y-%m-%d %H:%M"), r.mode) for r in cycles]


def at(zone: ZoneInfo, day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=zone)


def trades(day: date, *hours: tuple[int, int]) -> list[tuple[str, str]]:
    return [(f"{day} {h:02d}:{m:02d}", "trade") for h, m in hours]


def every_half_hour(first: tuple[int, int], last: tuple[int, int]) -> list[tuple[int, int]]:
    slots, (h, m) = [], first
    while (h, m) <= last:
        slots.append((h, m))
        h, m = (h, m + 30) if m == 0 else (h + 1, 0)
    return slots


async def test_a_us_week_with_a_holiday_an_early_close_and_a_weekend() -> None:
    # Wed 25 Nov 2026 (full day), Thu 26 (Thanksgiving: closed), Fri 27 (closes 13:00), Sat-Sun, Mon 30
    day = SimulatedDay(now=at(NEW_YORK, date(2026, 11, 25), 7), end=at(NEW_YORK, date(2026, 11, 30), 10, 5))
    assert await day.play(Planner(profile_for("US"), TIMES)) == 0

    wed, fri, mon = date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30)
    assert day.cycles(NEW_YORK) == [
        (f"{wed} 09:15", "scan"),
        *trades(wed, *every_half_hour((9, 30), (15, 30))),
        (f"{wed} 15:45", "close"),
        (f"{fri} 09:15", "scan"),
        *trades(fri, *every_half_hour((9, 30), (12, 30))),
        (f"{fri} 12:45", "close"),  # the early close at 13:00
        (f"{mon} 09:15", "scan"),
        *trades(mon, (9, 30), (10, 0)),
    ]
    # never two at once
    assert all(a.end <= b.start for a, b in itertools.pairwise(day.runs))
    # heartbeats only inside a trading day's window, between its cycles
    beats = [r.start.astimezone(NEW_YORK) for r in day.runs if r.mode == "heartbeat"]
    assert beats and all(time(9, 15) <= b.time() < time(16) and b.date() in (wed, fri, mon) for b in beats)
    assert not [b for b in beats if b.date() == fri and b.time() >= time(13)]
    # the nights, the holiday and the weekend are slept through in waits of at most an hour
    assert max(day.waits) <= 3600
    assert day.said[-1] == "schedule stopped"
    assert f"next: scan cycle at {at(NEW_YORK, mon, 9, 15).isoformat()}" in day.said


async def test_hong_kong_trades_in_both_sessions_never_at_lunch_and_closes_early_on_christmas_eve() -> None:
    # Wed 23 Dec 2026 (two sessions), Thu 24 (morning only), Fri 25 and Sat 26 closed, Mon 28 (two sessions)
    day = SimulatedDay(now=at(HONG_KONG, date(2026, 12, 23), 8), end=at(HONG_KONG, date(2026, 12, 28), 16, 30))
    await day.play(Planner(profile_for("HK"), TIMES))

    wed, thu, mon = date(2026, 12, 23), date(2026, 12, 24), date(2026, 12, 28)
    full_day = every_half_hour((9, 30), (11, 30)) + every_half_hour((13, 0), (15, 30))
    assert day.cycles(HONG_KONG) == [
        (f"{wed} 09:15", "scan"),
        *trades(wed, *full_day),
        (f"{wed} 15:45", "close"),
        (f"{thu} 09:15", "scan"),
        *trades(thu, *every_half_hour((9, 30), (11, 30))),
        (f"{thu} 11:45", "close"),
        (f"{mon} 09:15", "scan"),
        *trades(mon, *full_day),
        (f"{mon} 15:45", "close"),
    ]
    lunch = [c for c in day.runs if c.mode == "trade" and time(12) <= c.start.astimezone(HONG_KONG).time() < time(13)]
    assert lunch == []


async def test_a_failed_or_crashing_cycle_never_stops_the_schedule() -> None:
    wed = date(2026, 11, 25)

    def outcome(mode: str, start: datetime) -> int:
        if start.astimezone(NEW_YORK).time() == time(10):
            raise RuntimeError("the server fell over")
        return 1 if mode == "trade" else 0

    day = SimulatedDay(now=at(NEW_YORK, wed, 9, 20), end=at(NEW_YORK, wed, 11, 5), outcome=outcome)
    await day.play(Planner(profile_for("US"), TIMES))

    assert day.cycles(NEW_YORK) == [(f"{wed} 09:20", "scan"), *trades(wed, (9, 30), (10, 0), (10, 30), (11, 0))]
    assert sum("failed (exit 1); the schedule goes on" in line for line in day.said) == 4


async def test_a_cycle_longer_than_the_interval_skips_the_missed_ones_instead_of_catching_up() -> None:
    wed = date(2026, 11, 25)

    def duration(mode: str, start: datetime) -> timedelta:
        return timedelta(minutes=70) if start.astimezone(NEW_YORK).time() == time(10) else timedelta(minutes=1)

    day = SimulatedDay(now=at(NEW_YORK, wed, 9, 40), end=at(NEW_YORK, wed, 12, 5), duration=duration)
    await day.play(Planner(profile_for("US"), TIMES))

    # 09:30 is still due at 09:40 (until 10:00); 10:00 runs to 11:10: 10:30 is skipped (its moment has passed),
    # 11:00 runs late, once, and the schedule is back on time at 11:30
    assert day.cycles(NEW_YORK) == [*trades(wed, (9, 40), (10, 0), (11, 10), (11, 30), (12, 0))]
    assert all(a.end <= b.start for a, b in itertools.pairwise(day.runs))


async def test_a_stop_cancels_the_run_under_way_and_starts_nothing_more() -> None:
    started = anyio.Event()
    runs: list[str] = []

    async def run_mode(mode: str) -> int:
        runs.append(mode)
        started.set()
        await anyio.sleep_forever()
        return 0

    now = at(NEW_YORK, date(2026, 11, 25), 10)

    async def wait(seconds: float) -> None:
        raise AssertionError("no wait: a cycle is due")

    said: list[str] = []
    scheduler = Scheduler(Planner(profile_for("US"), TIMES), run_mode, lambda: now, wait, said.append)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            await started.wait()
            scheduler.request_stop()
    assert runs == ["trade"] and said == ["schedule stopped"]


@pytest.mark.parametrize("market", ["US", "HK"])
def test_each_trading_day_opens_with_a_scan_and_ends_with_one_close_inside_the_session(market: str) -> None:
    profile = profile_for(market)
    day = date(2026, 12, 2)
    slots = day_slots(profile, day, ScheduleTimes())
    opens, closes = profile.session_bounds(day)  # type: ignore[misc]
    assert slots[0].mode == "scan" and slots[0].until == opens
    assert slots[-1].mode == "close" and slots[-1].at == closes - timedelta(minutes=15) and slots[-1].until == closes
    assert all(s.mode == "trade" and profile.is_open(s.at) for s in slots[1:-1])
    assert all(a.until <= b.at for a, b in itertools.pairwise(slots))
    assert day_slots(profile, date(2026, 12, 5), ScheduleTimes()) == []  # a Saturday
