"""sync_positions: make the book equal the broker's positions, or refuse and change nothing. Runs on the
execution lane, so no order or fill of ours moves while it reads and applies.

1. Read the broker: its working orders, the final state of each of our working orders it no longer lists,
   its positions, then its working orders once more. A failed call ends the run here: a refused run is
   recorded and nothing changes.
2. Record what the broker reports for our orders (new fills move the book; a dry run only notes them). An
   order still pending that the broker does not know ``unsent_after_seconds`` after it was recorded never
   reached it — its sender crashed, or gave up after an answer that never came: it is ended as rejected (a
   replay of its approval then answers with it, and nothing is sent), it no longer holds its symbol in
   flight, and a position it would have reduced is protected again.
3. Diff the book against the positions, leaving alone every symbol with one of our entries or exits still
   working or unknown to the broker, and every symbol whose protective legs moved between the two reads of
   the working orders (they may have filled while the positions were read). Refuse a plan that looks like an
   outage unless forced; apply it set-based; write an audit row per change and the sync_runs row.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from catalyst_mcp.config import SyncSettings
from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market, OrderRole, OrderStatus
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.domain.models import BrokerOrder
from catalyst_mcp.domain.records import OrderRecord
from catalyst_mcp.markets.lots import lot_lookup
from catalyst_mcp.ports import Broker, Clock
from catalyst_mcp.reconcile.describe import describe_changes, describe_rest, plan_json
from catalyst_mcp.reconcile.diff import diff_sides, looks_like_outage
from catalyst_mcp.reconcile.plan import ChangeKind, InFlight, SyncPlan
from catalyst_mcp.reconcile.sides import BrokerSide, broker_side
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.booking import Booking, has_news
from catalyst_mcp.services.protection import Protection
from catalyst_mcp.store import audit as audit_store
from catalyst_mcp.store import book, orders, sync_runs
from catalyst_mcp.store.book import BookChanged
from catalyst_mcp.store.db import Conn, transaction
from catalyst_mcp.store.lane import Lane

TOOL = "sync_positions"


@dataclass(frozen=True, slots=True)
class SyncResult:
    sync_id: int
    plan: SyncPlan
    dry_run: bool
    applied: bool
    refused: str | None
    details: tuple[str, ...]
    orders_refreshed: tuple[str, ...] = ()  # client order ids whose new fills or status were recorded first

    @property
    def changes_made(self) -> bool:
        return self.applied and not self.plan.is_empty


@dataclass(frozen=True, slots=True)
class BrokerView:
    positions: BrokerSide  # keyed by canonical symbol as the snapshot was read
    latest: dict[str, BrokerOrder | None]  # what the broker says of each working order of ours (None: unknown)
    moving: frozenset[str]  # client ids of orders whose state changed between the two reads


async def read_broker(broker: Broker, working: list[OrderRecord], market: Market) -> BrokerView:
    """The broker's view around its positions; any failed call raises. The positions are keyed by canonical
    symbol as they are read (normalised once, here), and the snapshot itself is not kept."""
    first = {o.client_order_id: o for o in await broker.get_open_orders()}
    latest: dict[str, BrokerOrder | None] = {}
    for order in working:
        latest[order.client_order_id] = first.get(order.client_order_id) or await broker.get_order_by_client_id(
            order.client_order_id
        )
    positions = broker_side(market, await broker.get_positions())
    second = {o.client_order_id: o for o in await broker.get_open_orders()}
    moving: set[str] = set()
    for coid, before in first.items():
        if coid not in latest:
            continue  # not ours
        after = second.get(coid)
        if after is None:
            latest[coid] = await broker.get_order_by_client_id(coid)  # it ended between the two reads
            moving.add(coid)
        elif (after.status, after.filled_quantity) != (before.status, before.filled_quantity):
            latest[coid] = after
            moving.add(coid)
    return BrokerView(positions, latest, frozenset(moving))


def never_sent(working: list[OrderRecord], view: BrokerView, recorded_before: datetime) -> list[OrderRecord]:
    """Our orders still pending (never acknowledged), unknown to the broker, and recorded before
    ``recorded_before``: they never reached it. Every sender holds the lane, as the sync does, so none of
    them is being sent now."""
    return [
        o
        for o in working
        if o.status is OrderStatus.PENDING
        and view.latest.get(o.client_order_id) is None
        and o.client_order_id not in view.moving
        and (o.updated_at or o.created_at or recorded_before) < recorded_before
    ]


def _unsent_details(unsent: list[OrderRecord], dry_run: bool) -> list[str]:
    verb = "would be ended" if dry_run else "ended"
    return [f"order {o.client_order_id} never reached the broker: {verb} as rejected" for o in unsent]


def in_flight(working: list[OrderRecord], view: BrokerView, *, dry_run: bool) -> list[InFlight]:
    """The symbols a diff must leave alone, with the orders that make them so."""
    flying = []
    for order in working:
        seen = view.latest.get(order.client_order_id)
        entry_or_exit = order.role in (OrderRole.ENTRY, OrderRole.EXIT)
        if (
            seen is None
            or (entry_or_exit and seen.status.is_open)
            or order.client_order_id in view.moving
            or (dry_run and has_news(order, seen))
        ):
            flying.append(InFlight(order.symbol, order.client_order_id))
    return flying


@dataclass(frozen=True, slots=True)
class SyncService:
    lane: Lane
    broker: Broker
    booking: Booking
    protection: Protection
    clock: Clock
    market: Market
    lot_size: Callable[[str], Decimal]
    settings: SyncSettings

    async def sync_positions(self, *, dry_run: bool, force: bool, cycle_id: str | None, caller: Caller) -> SyncResult:
        args: dict[str, Any] = {"dry_run": dry_run, "force": force, **({"cycle_id": cycle_id} if cycle_id else {})}
        run = _Run(self, args, dry_run, force, cycle_id, caller)
        async with self.lane.hold() as conn:
            with collector_paused():  # the sides and the plan: see collector_paused
                working = await orders.working(conn, self.market)
                try:
                    view = await read_broker(self.broker, working, self.market)
                except CatalystError as exc:
                    reason = f"the broker could not be read ({exc}); nothing changed: run the sync again later"
                    return await run.refuse(conn, reason)
                recorded_before = self.clock.now() - timedelta(seconds=self.settings.unsent_after_seconds)
                unsent = never_sent(working, view, recorded_before)
                working = [o for o in working if o not in unsent]
                flying = in_flight(working, view, dry_run=dry_run)
                ended = [] if dry_run else await self._end_unsent(conn, unsent, caller)
                refreshed = (
                    []
                    if dry_run
                    else [
                        o.client_order_id
                        for o in await self.booking.record_news(conn, working, view.latest, caller, tool=TOOL)
                    ]
                )
                try:
                    result = await run.reconcile(conn, view.positions, flying, refreshed)
                except BookChanged as exc:
                    return await run.refuse(conn, str(exc), refreshed)
            if result.changes_made:
                moved = {c.symbol for c in result.plan.changes if c.kind is not ChangeKind.PRICE}
                if moved:  # only symbols with protective legs working have anything to refit: one read finds them
                    legs = {o.symbol for o in await orders.working(conn, self.market) if o.role.is_leg}
                    moved &= legs
                await self.protection.refit_after_sync(conn, moved, caller, tool=TOOL)
            for symbol in sorted({o.symbol for o in ended}):  # after any refit: protects only what is left bare
                await self.protection.protect_if_bare(conn, symbol, caller, tool=TOOL)
            if unsent:
                result = replace(result, details=(*_unsent_details(unsent, dry_run), *result.details))
            return result

    async def _end_unsent(self, conn: Conn, unsent: list[OrderRecord], caller: Caller) -> list[OrderRecord]:
        reason = f"never reached the broker: unknown to it {self.settings.unsent_after_seconds} s after it was recorded"
        return [
            await self.booking.record_unsent(conn, o, OrderStatus.REJECTED, reason, caller, tool=TOOL) for o in unsent
        ]


_pauses = 0  # syncs (one per market at most) inside collector_paused now
_resume = False  # whether the collector was enabled when the first of them paused it


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a sync reads both sides and builds its plan. A sync of 100,000
    positions allocates several hundred thousand short-lived, acyclic objects (the broker's answer, the rows
    as decoded, the plan); each time enough of them survive, CPython runs a full collection that scans the
    whole heap again, several times per sync. Reference counting still frees every one of them; cycles made
    meanwhile elsewhere in the process are collected once the last pause ends (a sync's reads are bounded by
    the broker's timeouts). Nested or concurrent pauses count; a collector disabled by someone else stays so."""
    global _pauses, _resume
    if _pauses == 0:
        _resume = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _resume:
            gc.enable()


class _Run:
    def __init__(
        self, svc: SyncService, args: dict[str, Any], dry_run: bool, force: bool, cycle_id: str | None, caller: Caller
    ) -> None:
        self.svc, self.args, self.dry_run, self.force = svc, args, dry_run, force
        self.cycle_id, self.caller = cycle_id, caller

    async def reconcile(
        self, conn: Conn, snapshot: BrokerSide, flying: list[InFlight], refreshed: list[str]
    ) -> SyncResult:
        svc, market = self.svc, self.svc.market
        now = svc.clock.now()
        async with transaction(conn):
            held = await book.open_side(conn, market, known=snapshot.first)
            plan = diff_sides(
                held,
                snapshot,
                flying,
                svc.settings.price_tolerance,
                market=market,
                lot_size=lot_lookup(market, svc.lot_size),
            )
            refused = None if self.force else self._outage(plan)
            apply = refused is None and not self.dry_run
            if apply:
                await book.apply_plan(conn, market, plan, now)
                if not plan.is_empty:
                    await book.bump_version(conn, market)
            changes = describe_changes(plan, applied=apply)
            details = [f"order {c}: new fills or status recorded from the broker" for c in refreshed]
            details += changes + describe_rest(plan)
            if not details:
                details = [f"the book matches the broker ({plan.book_size} positions)"]
            sync_id = await self._record(conn, plan, apply, refused)
            if not self.dry_run:
                if apply:
                    await audit_store.insert_many(
                        conn,
                        self.caller.entry(TOOL, self.args, "", self.cycle_id),
                        [f"sync {sync_id}: {c}" for c in changes],
                    )
                summary = refused or f"{len(plan.changes)} changes applied, {len(plan.skipped)} symbols in flight"
                await audit(conn, self.caller, TOOL, self.args, f"sync {sync_id}: {summary}", self.cycle_id)
        return SyncResult(sync_id, plan, self.dry_run, apply, refused, tuple(details), tuple(refreshed))

    def _outage(self, plan: SyncPlan) -> str | None:
        s = self.svc.settings
        if not looks_like_outage(plan, s.outage_share, s.outage_min_positions):
            return None
        closing = len(plan.of(ChangeKind.PHANTOM))
        if closing == plan.book_size:
            why = "none of them"
        else:
            why = f"more than {plain(s.outage_share * 100)}% and at least {s.outage_min_positions}"
        return (
            f"the broker does not report {closing} of the book's {plan.book_size} open positions ({why}): a"
            " probable outage; no position changed. Check the broker, then sync again, or force=true if they"
            " really are gone"
        )

    async def _record(self, conn: Conn, plan: SyncPlan, applied: bool, refused: str | None) -> int:
        return await sync_runs.insert(
            conn,
            cycle_id=self.cycle_id,
            market=self.svc.market,
            dry_run=self.dry_run,
            forced=self.force,
            applied=applied,
            refused=refused,
            plan=plan_json(plan),
            at=self.svc.clock.now(),
        )

    async def refuse(self, conn: Conn, reason: str, refreshed: list[str] | None = None) -> SyncResult:
        """Record a run that changed no position (a failed broker call, a book that moved meanwhile)."""
        empty = SyncPlan((), 0)
        async with transaction(conn):
            sync_id = await self._record(conn, empty, False, reason)
            if not self.dry_run:
                await audit(conn, self.caller, TOOL, self.args, f"sync {sync_id}: {reason}", self.cycle_id)
        return SyncResult(sync_id, empty, self.dry_run, False, reason, (), tuple(refreshed or ()))
