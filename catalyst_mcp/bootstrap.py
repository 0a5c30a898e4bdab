"""The composition root: from the settings, the store (a migrated pool, the order lane, the change channel),
the exchange calendar, the broker and its market data (``open_runtime``), and from those the services
(``assemble``) — the only module that knows which adapters exist and how the services fit together.
Everything it opens is closed on exit."""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import asyncpg

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerKind, BrokerMode
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.markets.profiles import MarketProfile, profile_for
from catalyst_mcp.store.db import Database, connect, create_pool
from catalyst_mcp.store.embedded import default_data_dir, ensure_embedded_postgres, needs_restart
from catalyst_mcp.store.migrate import apply_migrations

if TYPE_CHECKING:
    from catalyst_mcp.ports import Broker, Clock, MarketData
    from catalyst_mcp.services.monitor import MonitorPolicy, MonitorService
    from catalyst_mcp.services.suite import Services
    from catalyst_mcp.store.lane import Lane
    from catalyst_mcp.store.tokens import TokenFile

# The opening of the store (the pool, the migrations) needs only the modules above, so it can run while the rest
# is still being imported (docs/adr/0010-startup.md); the adapters and services are imported where they are built.

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    """The opened parts: the settings, the market's profile and clock, the database (its URI and request
    pool), the market's execution lane, and the broker and market data adapters."""

    settings: Settings
    pool: asyncpg.Pool
    profile: MarketProfile
    broker: Broker
    market_data: MarketData
    clock: Clock
    lane: Lane
    database_uri: str


async def database_uri(settings: Settings) -> str:
    """CATALYST_DATABASE_URL when set, else the embedded PostgreSQL under the data dir."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    data_dir = settings.data_dir or default_data_dir()
    return await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)


EMBEDDED_CHECK_SECONDS = 2.0


async def keep_embedded_alive(data_dir: pathlib.Path) -> None:
    """Restart the embedded PostgreSQL when it dies under this process (killed, crashed), unless an operator
    stopped it (``catalyst-mcp db stop``). The pools reconnect by themselves once it answers again."""
    while True:
        await anyio.sleep(EMBEDDED_CHECK_SECONDS)
        if not await anyio.to_thread.run_sync(needs_restart, data_dir):
            continue
        log.warning("the embedded PostgreSQL in %s stopped under this server; restarting it", data_dir)
        try:
            await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        except OperatorNeeded as exc:
            log.error("the embedded PostgreSQL could not be restarted: %s", exc)
        else:
            log.warning("the embedded PostgreSQL in %s is back", data_dir)


@asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A migrated connection pool."""
    async with open_store(settings) as (pool, _):
        yield pool


@asynccontextmanager
async def open_store(settings: Settings, *, max_size: int = 10) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A migrated connection pool, and the URI it connects to (for connections outside it)."""
    uri = await database_uri(settings)
    try:
        pool = await create_pool(uri, max_size=max_size)
    except (OSError, asyncpg.PostgresError) as exc:
        raise OperatorNeeded(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from None
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        yield pool, uri
    finally:
        await pool.close()


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, clock: Clock | None = None, store: tuple[asyncpg.Pool, str] | None = None
) -> AsyncIterator[Runtime]:
    """Open the store and the adapters named by the settings; close them on exit. ``store``: a migrated pool
    and its URI opened by the caller (``open_store``), who closes it."""
    from catalyst_mcp.store.calendar_cache import warm_calendar
    from catalyst_mcp.store.lane import Lane

    wall = clock or SystemClock()
    profile = profile_for(settings.market)
    cache_dir = (settings.data_dir or default_data_dir()) / "cache"
    async with AsyncExitStack() as stack:
        pool, uri = store if store is not None else await stack.enter_async_context(open_store(settings))
        # After the store: a data dir that cannot be used is reported once, by the database's start.
        await anyio.to_thread.run_sync(warm_calendar, profile, cache_dir)
        lane = Lane(profile.market, functools.partial(connect, uri), wait_seconds=settings.lane_wait_seconds)
        stack.push_async_callback(lane.close)
        if settings.database_url is None:  # the embedded server: this process brings it back if it dies
            watch = await stack.enter_async_context(anyio.create_task_group())
            watch.start_soon(keep_embedded_alive, settings.data_dir or default_data_dir())
            stack.callback(watch.cancel_scope.cancel)
        broker: Broker
        market_data: MarketData
        if settings.broker is BrokerKind.ALPACA:
            from catalyst_mcp.brokers.alpaca_lazy import open_alpaca_lazily

            broker, market_data = await stack.enter_async_context(open_alpaca_lazily(settings, profile, wall))
        elif settings.broker is BrokerKind.MOOMOO:
            from catalyst_mcp.brokers.moomoo_lazy import open_moomoo_lazily

            broker, market_data = await stack.enter_async_context(open_moomoo_lazily(settings, profile, wall))
        else:
            from catalyst_mcp.brokers.simulated import SimExchange

            # The simulated exchange is a venue of its own: its own small pool, never the request pool.
            sim_pool = await create_pool(uri, min_size=1, max_size=4, guarded=True)
            stack.push_async_callback(sim_pool.close)
            broker = market_data = SimExchange(
                sim_pool,
                profile,
                seed=settings.sim_seed,
                starting_cash=settings.sim_starting_cash,
                wall_clock=wall,
                follow_wall=settings.sim_clock == "wall",
            )
        yield Runtime(settings, pool, profile, broker, market_data, wall, lane, uri)


def assemble(rt: Runtime) -> Services:
    """The services over the opened parts: each receives exactly the ports, store handles and other services
    it uses."""
    from catalyst_mcp.services.approval import ApprovalService
    from catalyst_mcp.services.audit import AuditService
    from catalyst_mcp.services.booking import Booking
    from catalyst_mcp.services.closing import ClosingService
    from catalyst_mcp.services.cycles import CycleService
    from catalyst_mcp.services.directives import DirectiveService
    from catalyst_mcp.services.execution import ExecutionService
    from catalyst_mcp.services.halting import Halting
    from catalyst_mcp.services.orders import OrderService
    from catalyst_mcp.services.portfolio import PortfolioService
    from catalyst_mcp.services.protection import Protection
    from catalyst_mcp.services.reading import SnapshotReader
    from catalyst_mcp.services.suite import Services
    from catalyst_mcp.services.supervision import SupervisionService
    from catalyst_mcp.services.sync import SyncService
    from catalyst_mcp.services.technicals import TechnicalsService
    from catalyst_mcp.services.workflow import WorkflowService
    from catalyst_mcp.store.changes import PgChanges

    settings, market, clock, broker, data = rt.settings, rt.profile.market, rt.clock, rt.broker, rt.market_data
    db = Database(rt.pool)
    idle_after = timedelta(seconds=settings.abandon_after_seconds)
    booking = Booking(market, broker.name, clock)
    protection = Protection(market, clock, broker, data.lot_size, booking)
    halting = Halting(market, clock, broker, booking, settings.halt_cancels_entries)
    reader = SnapshotReader(
        rt.profile,
        clock,
        broker,
        data,
        timedelta(seconds=settings.risk.duplicate_window_seconds),
        account_reuse=timedelta(seconds=settings.account_reuse_seconds),
        quote_reuse=timedelta(seconds=settings.quote_reuse_seconds),
    )
    workflow = WorkflowService(db, clock, market, broker.mode, idle_after)
    sync = SyncService(rt.lane, broker, booking, protection, clock, market, data.lot_size, settings.sync)
    directives = DirectiveService(db, clock)
    approvals = ApprovalService(rt.lane, reader, halting, clock, market, settings.risk, settings.agent_id, idle_after)
    execution = ExecutionService(
        db=db,
        lane=rt.lane,
        reader=reader,
        booking=booking,
        protection=protection,
        halting=halting,
        broker=broker,
        market_data=data,
        clock=clock,
        market=market,
        limits=settings.risk,
        agent_id=settings.agent_id,
        idle_after=idle_after,
        quote_reuse=timedelta(seconds=settings.quote_reuse_seconds),
        live=broker.mode is BrokerMode.LIVE,
        currency=rt.profile.currency,
    )
    scanner = settings.scanner
    portfolio = PortfolioService(db, broker, data, clock, rt.profile, scanner.criteria(market), scanner.symbols(market))
    return Services(
        profile=rt.profile,
        clock=clock,
        agent_id=settings.agent_id,
        broker_mode=broker.mode,
        limits=settings.risk,
        workflow=workflow,
        cycles=CycleService(db, broker, clock, rt.profile, workflow, sync, directives),
        approvals=approvals,
        execution=execution,
        closing=ClosingService(portfolio, approvals, execution),
        orders=OrderService(db, rt.lane, broker, booking, protection, clock, market),
        sync=sync,
        portfolio=portfolio,
        technicals=TechnicalsService(data, rt.profile),
        directives=directives,
        supervision=SupervisionService(db, rt.lane, halting, directives, broker, clock, market),
        audit=AuditService(db, timedelta(days=settings.audit_retention_days)),
        changes=PgChanges(rt.database_uri, rt.pool),
    )


async def reset_everything(settings: Settings, by: str) -> int:
    """Wipe the simulated exchange and the book in one transaction (``catalyst-mcp reset``); the audit trail is
    kept (archived) and the trading state untouched. Refused unless the broker is the simulated exchange.
    Returns how many audit rows were archived."""
    from catalyst_mcp.brokers.simulated import reset_simulation
    from catalyst_mcp.store.audit import AuditEntry
    from catalyst_mcp.store.wipe import wipe_book

    if settings.broker is not BrokerKind.SIM:
        raise OperatorNeeded(
            f"reset wipes the simulated exchange and the book; this configuration trades on {settings.broker.value}:"
            " refused"
        )
    async with open_pool(settings) as pool, pool.acquire() as conn, conn.transaction():
        await reset_simulation(conn)
        entry = AuditEntry(by, "operator", "reset", {}, "the simulated exchange and the book were wiped", None)
        return await wipe_book(conn, SystemClock().now(), entry)


def tokens_path(settings: Settings) -> pathlib.Path:
    """CATALYST_TOKENS_FILE, else tokens.toml in the data dir."""
    return settings.tokens_file or (settings.data_dir or default_data_dir()) / "tokens.toml"


def open_grants(settings: Settings) -> TokenFile:
    from catalyst_mcp.store.tokens import TokenFile

    return TokenFile(tokens_path(settings))


def monitor_settings(settings: Settings) -> Settings:
    """The settings a monitor process runs with: its own agent id, so its exits, outside any cycle, are its own
    and never refused because the trading agent has a cycle open."""
    return settings.model_copy(update={"agent_id": settings.monitor.agent_id})


def monitor_policy(settings: Settings) -> MonitorPolicy:
    """The monitor's policy: ``CATALYST_MONITOR__…`` over the market's default exit thresholds."""
    from catalyst_mcp.services.monitor import MonitorPolicy
    from catalyst_mcp.signals.exits import DEFAULT_EXIT_THRESHOLDS, Strength

    chosen = settings.monitor
    overrides = {
        name: value
        for name in (
            "stop_loss_pct",
            "take_profit_pct",
            "trailing_stop_pct",
            "time_stop_minutes",
            "end_of_session_minutes",
        )
        if (value := getattr(chosen, name)) is not None
    }
    try:
        thresholds = dataclasses.replace(DEFAULT_EXIT_THRESHOLDS[settings.market], **overrides)
    except ValueError as exc:
        raise OperatorNeeded(f"invalid monitor settings: {exc}") from None
    return MonitorPolicy(
        interval=timedelta(seconds=chosen.interval_seconds),
        exit_strength=Strength(chosen.exit_strength),
        thresholds=thresholds,
        lease=timedelta(seconds=chosen.lease_seconds),
        max_backoff=timedelta(seconds=chosen.max_backoff_seconds),
    )


def build_monitor(rt: Runtime, services: Services) -> MonitorService:
    """The monitor over a runtime opened with ``monitor_settings``."""
    from catalyst_mcp.services.audit import Caller
    from catalyst_mcp.services.monitor import MonitorService

    return MonitorService(
        db=Database(rt.pool),
        clock=rt.clock,
        broker=rt.broker,
        market_data=rt.market_data,
        portfolio=services.portfolio,
        technicals=services.technicals,
        closing=services.closing,
        profile=rt.profile,
        policy=monitor_policy(rt.settings),
        caller=Caller(name="catalyst-monitor", role="trader"),
    )
