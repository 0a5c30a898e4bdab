"""The position monitor (services/monitor.py, ``catalyst-mcp monitor``) on the simulated exchange, on a
controllable clock: a bought position is closed when its stop, target or trailing stop is hit, through
check_risk and execute_trade, with the reason in the audit and in workflow_status; one monitor per market (a
lease in PostgreSQL); passes only in sessions; failures back off and recover. The monitor runs as a second
process would: its own runtime (own pools, own exchange object, its own agent id) on the same database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast
from zoneinfo import ZoneInfo

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, assemble, build_monitor, monitor_settings, open_runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import OrderType, Side
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.monitor import EXIT_BUSY, EXIT_OK, MonitorLoop, MonitorService
from catalyst_mcp.signals.exits import Strength

D = Decimal
NY = ZoneInfo("America/New_York")
BUYER = Caller("test-buyer")
WEDNESDAY_10AM = datetime(2026, 11, 25, 10, 0, tzinfo=NY)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(WEDNESDAY_10AM)


@pytest.fixture
def settings(database_url: str) -> Settings:
    # "wall": the simulated exchange keeps real hours on the test's clock, so sessions and closes are real.
    return Settings(database_url=SecretStr(database_url), agent_id="test_agent", sim_seed=7, sim_clock="wall")


@pytest.fixture
async def watcher(settings: Settings, clock: FixedClock) -> AsyncIterator[MonitorService]:
    async with open_runtime(monitor_settings(settings), clock=clock) as rt:
        yield build_monitor(rt, assemble(rt))


@dataclass
class Steps:
    """A ``wait`` that advances the clock instead of sleeping, and stops the loop after ``limit`` waits."""

    clock: FixedClock
    stop: anyio.Event
    limit: int
    waits: list[float] = field(default_factory=list)
    said: list[tuple[datetime, str]] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.said.append((self.clock.now(), line))

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))
        if len(self.waits) >= self.limit:
            self.stop.set()
        await anyio.lowlevel.checkpoint()


def loop_of(service: MonitorService, clock: FixedClock, limit: int, holder: str = "") -> tuple[MonitorLoop, Steps]:
    stop = anyio.Event()
    steps = Steps(clock, stop, limit)
    return MonitorLoop(service, steps.wait, steps.say, stop, holder), steps


async def buy(runtime: Runtime, clock: FixedClock, symbol: str, quantity: str) -> Decimal:
    """Buy through check_risk and execute_trade as the trading agent, its stop 8 % below; the fill price."""
    clock.advance(timedelta(seconds=61))  # past the duplicate-order window
    services = assemble(runtime)
    quote = await services.portfolio.quote(symbol)
    assert quote is not None
    wide_stop = (quote.bid * D("0.92")).quantize(D("0.01"))  # a broker-side stop far below the monitor's 2 %
    intent = OrderIntent(symbol, Side.BUY, D(quantity), OrderType.MARKET, stop_loss=wide_stop)
    risk = await services.approvals.check_risk(intent, None, BUYER)
    assert risk.approval_id is not None, risk.decision.reasons
    done = await services.execution.execute_trade(risk.approval_id, None, BUYER)
    assert done.order is not None and done.order.avg_fill_price is not None, done.reason
    return done.order.avg_fill_price


async def held(runtime: Runtime) -> dict[str, Decimal]:
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT symbol, quantity FROM positions WHERE status = 'open'")
    return {r["symbol"]: r["quantity"] for r in rows}


async def pin(ctl: SimControls, symbol: str, price: Decimal) -> None:
    await ctl.pin_price(symbol, price.quantize(D("0.01")))


async def test_a_stop_hit_closes_the_position_with_the_reason_in_the_audit_and_workflow_status(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService, settings: Settings
) -> None:
    entry = await buy(runtime, clock, "AAPL", "10")
    loop, _ = loop_of(watcher, clock, 1)
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {"AAPL": D(10)}, "no signal yet: nothing closed"

    await pin(ctl, "AAPL", entry * D("0.97"))  # past the US default stop of 2 %
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {}
    async with runtime.pool.acquire() as conn:
        audited = await conn.fetchrow("SELECT caller, outcome, arguments FROM audit_events WHERE tool = 'monitor'")
        exits = await conn.fetch("SELECT * FROM risk_decisions WHERE side = 'sell'")
    assert audited is not None and audited["caller"] == "catalyst-monitor"
    assert audited["outcome"].startswith("closed: sell 10 @")
    assert "stop loss" in audited["arguments"]["reason"] and len(exits) == 1 and exits[0]["approved"]

    async with Client(build_server(settings, runtime=runtime)) as client:
        status = (await client.call_tool("workflow_status", {})).structured_content
    assert status is not None
    watching = status["monitor"]
    assert watching["running"] is False, "a --once pass lets the lease go"
    assert watching["passes"] == 2 and watching["positions_watched"] == 1 and watching["last_error"] is None
    [exit_] = watching["exits"]
    assert exit_["symbol"] == "AAPL" and exit_["signal"] == "stop_loss" and exit_["action"] == "closed"
    assert exit_["strength"] == "critical" and exit_["reason"].startswith("stop loss: ")


async def test_a_take_profit_and_a_trailing_stop_close_their_positions(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService
) -> None:
    aapl = await buy(runtime, clock, "AAPL", "5")
    msft = await buy(runtime, clock, "MSFT", "5")
    loop, _ = loop_of(watcher, clock, 1)
    await pin(ctl, "AAPL", aapl * D("1.05"))  # past the 4 % target
    await pin(ctl, "MSFT", msft * D("1.03"))  # up, below the target: the high-water mark moves
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {"MSFT": D(5)}

    await pin(ctl, "MSFT", msft * D("1.012"))  # gave back more than 1.5 % from the high, still above entry
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {}
    async with runtime.pool.acquire() as conn:
        rules = await conn.fetch("SELECT symbol, rule FROM monitor_checks WHERE action = 'closed' ORDER BY check_id")
    assert [(r["symbol"], r["rule"]) for r in rules] == [("AAPL", "take_profit"), ("MSFT", "trailing_stop")]


async def test_an_exit_without_a_definite_answer_is_sent_again_with_its_own_approval(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService
) -> None:
    entry = await buy(runtime, clock, "AAPL", "10")
    await pin(ctl, "AAPL", entry * D("0.97"))
    await ctl.fault("submit", "timeout", 1)
    loop, _ = loop_of(watcher, clock, 1)
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {"AAPL": D(10)}
    async with runtime.pool.acquire() as conn:
        first = await conn.fetchrow("SELECT action, detail FROM monitor_checks WHERE action <> 'watched'")
        pending = await conn.fetchval("SELECT pending_approval FROM monitor_marks")
    assert first is not None and first["action"] == "failed" and "not confirmed by the broker" in first["detail"]
    assert pending is not None

    await pin(ctl, "AAPL", entry)  # the signal is gone; the exit already decided is settled all the same
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {}
    async with runtime.pool.acquire() as conn:
        approvals = await conn.fetchval("SELECT count(*) FROM risk_decisions WHERE side = 'sell'")
        sells = await conn.fetchval("SELECT count(*) FROM sim.orders WHERE side = 'sell' AND stop_price IS NULL")
    assert approvals == 1, "one approval: the replay never asks check_risk again"
    assert sells == 1, "one order at the broker"


async def test_an_exit_the_risk_rules_refuse_is_recorded_and_nothing_is_sent(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService
) -> None:
    entry = await buy(runtime, clock, "AAPL", "10")
    # the trading agent holds an approval to sell all ten: they are reserved, none left for the monitor
    agents_sell = OrderIntent("AAPL", Side.SELL, D(10), OrderType.MARKET)
    assert (await assemble(runtime).approvals.check_risk(agents_sell, None, BUYER)).approval_id is not None
    await pin(ctl, "AAPL", entry * D("0.97"))
    loop, _ = loop_of(watcher, clock, 1)
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {"AAPL": D(10)}
    async with runtime.pool.acquire() as conn:
        check = await conn.fetchrow("SELECT action, detail FROM monitor_checks WHERE action <> 'watched'")
        sells = await conn.fetchval("SELECT count(*) FROM sim.orders WHERE side = 'sell' AND stop_price IS NULL")
    assert check is not None and check["action"] == "refused"
    assert "already in working or approved sells" in check["detail"] and sells == 0


async def test_a_weaker_signal_than_the_setting_is_watched_not_acted_on(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService
) -> None:
    entry = await buy(runtime, clock, "AAPL", "10")
    await pin(ctl, "AAPL", entry)
    clock.advance(timedelta(hours=2, minutes=1))  # flat for longer than the time stop (moderate)
    await pin(ctl, "AAPL", entry)
    loop, _ = loop_of(watcher, clock, 1)
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {"AAPL": D(10)}
    async with runtime.pool.acquire() as conn:
        check = await conn.fetchrow("SELECT strength, rule, action FROM monitor_checks ORDER BY check_id DESC")
    assert check is not None and check["action"] == "watched"
    assert check["strength"] in ("moderate", "weak", "none")


async def test_with_exit_strength_moderate_a_flat_position_is_closed_by_the_time_stop(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService
) -> None:
    entry = await buy(runtime, clock, "AAPL", "10")
    clock.advance(timedelta(hours=2, minutes=1))
    await pin(ctl, "AAPL", entry)
    moderate = replace(watcher, policy=replace(watcher.policy, exit_strength=Strength.MODERATE))
    loop, _ = loop_of(moderate, clock, 1)
    assert await loop.once() == EXIT_OK
    assert await held(runtime) == {}
    async with runtime.pool.acquire() as conn:
        rule = await conn.fetchval("SELECT rule FROM monitor_checks WHERE action = 'closed'")
    assert rule in ("time_stop", "ma_breakdown")


async def test_one_monitor_per_market_a_second_waits_for_the_lease(
    runtime: Runtime, clock: FixedClock, watcher: MonitorService, settings: Settings
) -> None:
    async with open_runtime(monitor_settings(settings), clock=clock) as rt2:
        other = build_monitor(rt2, assemble(rt2))
        leases = await asyncio_gather(*(other.take_lease(f"racer-{n}") for n in range(16)))
        assert sum(lease.mine for lease in leases) == 1, "racing monitors: exactly one takes a free lease"
        winner = next(lease.holder for lease in leases if lease.mine)

        second, _ = loop_of(watcher, clock, 1, holder="second")
        assert await second.once() == EXIT_BUSY
        assert (await watcher.take_lease("second")).mine is False
        assert (await other.take_lease(winner)).mine, "the holder renews its own lease"
        clock.advance(watcher.policy.lease + timedelta(seconds=1))  # the holder went silent
        assert await second.once() == EXIT_OK


async def asyncio_gather(*work: object) -> list:  # type: ignore[type-arg]
    results: list = [None] * len(work)  # type: ignore[type-arg]

    async def one(i: int, w: object) -> None:
        results[i] = await w  # type: ignore[misc]

    async with anyio.create_task_group() as tg:
        for i, w in enumerate(work):
            tg.start_soon(one, i, w)
    return results


async def test_the_loop_passes_in_sessions_sleeps_through_thanksgiving_and_stops_cleanly(
    runtime: Runtime, clock: FixedClock, watcher: MonitorService
) -> None:
    await buy(runtime, clock, "AAPL", "1")
    clock.set(datetime(2026, 11, 25, 15, 30, tzinfo=NY))
    policy = replace(watcher.policy, interval=timedelta(minutes=5), lease=timedelta(hours=1))
    loop, steps = loop_of(replace(watcher, policy=policy), clock, 300)
    assert await loop.run() == EXIT_OK
    passes = [at.astimezone(NY) for at, line in steps.said if "monitor pass" in line]
    wednesday = [p for p in passes if p.day == 25]
    assert wednesday[:2] == [datetime(2026, 11, 25, 15, 30, tzinfo=NY), datetime(2026, 11, 25, 15, 35, tzinfo=NY)]
    assert wednesday[-1] == datetime(2026, 11, 25, 15, 59, tzinfo=NY), "the last look before the close"
    assert not any(p.day == 26 for p in passes), "Thanksgiving: no pass"
    assert all(watcher.profile.is_open(p) for p in passes)
    friday = [p for p in passes if p.day == 27]
    assert friday[0] == datetime(2026, 11, 27, 9, 30, tzinfo=NY)
    assert friday[-1] == datetime(2026, 11, 27, 12, 59, tzinfo=NY), "the half day's early close"
    closed = [line for _, line in steps.said if "AAPL closed" in line]
    assert len(closed) == 1 and "end of session" in closed[0], "closed 15 minutes before Wednesday's close"
    # asleep, it wakes at least every third of the lease to renew it: never a gap a second monitor could use
    assert max(steps.waits) <= policy.lease.total_seconds() / 3
    async with runtime.pool.acquire() as conn:
        lease = await conn.fetchrow("SELECT lease_until FROM monitor_state")
    assert lease is not None and lease["lease_until"] <= clock.now(), "a stopped monitor lets its lease go"
    assert any("closed: next pass at the open, 2026-11-27T09:30:00-05:00" in line for _, line in steps.said)


async def test_failures_back_off_doubling_to_the_bound_and_the_loop_recovers(
    runtime: Runtime, ctl: SimControls, clock: FixedClock, watcher: MonitorService
) -> None:
    await buy(runtime, clock, "AAPL", "1")
    await ctl.fault("quote", "error", 5)
    loop, steps = loop_of(watcher, clock, 7)
    assert await loop.run() == EXIT_OK
    interval = watcher.policy.interval.total_seconds()
    assert steps.waits[:5] == [interval, 2 * interval, 4 * interval, min(8 * interval, 300), 300]
    assert steps.waits[5] == min(interval, watcher.policy.lease.total_seconds() / 3), "a pass that works ends it"
    assert sum("failed" in line for _, line in steps.said) == 5
    async with runtime.pool.acquire() as conn:
        state = await conn.fetchrow("SELECT passes, last_error FROM monitor_state")
    assert state is not None and state["passes"] >= 1 and state["last_error"] is None


HKT = ZoneInfo("Asia/Hong_Kong")


async def test_on_hk_a_board_lot_position_is_closed_at_its_stop_and_the_lunch_break_is_an_end_of_session(
    database_url: str,
) -> None:
    clock = FixedClock(datetime(2026, 12, 2, 10, 30, tzinfo=HKT))
    hk = Settings(
        database_url=SecretStr(database_url),
        market="HK",
        agent_id="hk_agent",
        sim_seed=7,
        sim_clock="wall",
        sim_starting_cash=D(1_000_000),
    )
    async with open_runtime(hk, clock=clock) as rt, open_runtime(monitor_settings(hk), clock=clock) as mrt:
        watcher = build_monitor(mrt, assemble(mrt))
        ctl = SimControls(cast(SimExchange, rt.broker))
        entry = await buy(rt, clock, "00700", "200")
        loop, _ = loop_of(watcher, clock, 1)
        await pin(ctl, "00700", entry * D("0.97"))  # past HK's default stop of 2.5 %
        assert await loop.once() == EXIT_OK
        assert await held(rt) == {}

        second = await buy(rt, clock, "00005", "400")
        clock.set(datetime(2026, 12, 2, 11, 52, tzinfo=HKT))  # 8 minutes to the lunch break
        await pin(ctl, "00005", second)
        assert await loop.once() == EXIT_OK
        assert await held(rt) == {}
        async with rt.pool.acquire() as conn:
            rules = [r["rule"] for r in await conn.fetch("SELECT rule FROM monitor_checks WHERE action = 'closed'")]
        assert rules == ["stop_loss", "end_of_session"]


async def test_on_the_simulated_session_clock_a_fresh_position_is_not_old(database_url: str) -> None:
    """The default simulated exchange keeps its own time inside sessions (a Saturday's wall clock runs in
    some session): a position just bought has been held for seconds, not for the distance between clocks."""
    clock = FixedClock(datetime(2026, 11, 28, 15, 0, tzinfo=NY))  # a Saturday
    plain = Settings(database_url=SecretStr(database_url), agent_id="test_agent", sim_seed=7)
    async with open_runtime(plain, clock=clock) as rt, open_runtime(monitor_settings(plain), clock=clock) as mrt:
        watcher = build_monitor(mrt, assemble(mrt))
        await buy(rt, clock, "AAPL", "10")
        jumpy = replace(watcher, policy=replace(watcher.policy, exit_strength=Strength.MODERATE))
        loop, _ = loop_of(jumpy, clock, 1)
        assert await loop.once() == EXIT_OK
        async with rt.pool.acquire() as conn:
            rule = await conn.fetchval("SELECT rule FROM monitor_checks ORDER BY check_id DESC LIMIT 1")
        assert rule != "time_stop"
