"""sync_positions: make the book equal the broker's positions, or refuse and change nothing. Runs on the
execution lane, so no order or fill of ours moves while it reads and applies.

1. Read the broker: its working orders, the final state of each of our working orders it no longer lists,
   its positions, then its working orders once more. A failed call ends the run here: a refused run is
   recorded and nothing changes.
2. Record what the broker reports for our orders (new fills move the book; a dry run only notes them).
3. Diff the book against the positions, leaving alone every symbol with one of our entries or exits still
   working or unknown to the broker, and every symbol whose protective legs moved between the two reads of
   the working orders (they may have filled while the positions were read). Refuse a plan that looks like an
   outage unless forced; apply it set-based; write an audit row per change and the sync_runs row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderRole
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.domain.models import BrokerOrder, BrokerPosition
from catalyst_mcp.markets.lots import lot_lookup
from catalyst_mcp.reconcile.describe import describe_changes, describe_rest, plan_json
from catalyst_mcp.reconcile.diff import diff, looks_like_outage
from catalyst_mcp.reconcile.plan import ChangeKind, InFlight, SyncPlan
from catalyst_mcp.services import protection
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.orders import has_news, record_news
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import book_repo, book_snapshot, orders_repo, repos
from catalyst_mcp.store.book_repo import BookChanged
from catalyst_mcp.store.records import OrderRecord

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
    positions: list[BrokerPosition]
    latest: dict[str, BrokerOrder | None]  # what the broker says of each working order of ours (None: unknown)
    moving: frozenset[str]  # client ids of orders whose state changed between the two reads


async def read_broker(rt: Runtime, working: list[OrderRecord]) -> BrokerView:
    """The broker's view around its positions; any failed call raises."""
    first = {o.client_order_id: o for o in await rt.broker.get_open_orders()}
    latest: dict[str, BrokerOrder | None] = {}
    for order in working:
        latest[order.client_order_id] = first.get(order.client_order_id) or await rt.broker.get_order_by_client_id(
            order.client_order_id
        )
    positions = await rt.broker.get_positions()
    second = {o.client_order_id: o for o in await rt.broker.get_open_orders()}
    moving: set[str] = set()
    for coid, before in first.items():
        if coid not in latest:
            continue  # not ours
        after = second.get(coid)
        if after is None:
            latest[coid] = await rt.broker.get_order_by_client_id(coid)  # it ended between the two reads
            moving.add(coid)
        elif (after.status, after.filled_quantity) != (before.status, before.filled_quantity):
            latest[coid] = after
            moving.add(coid)
    return BrokerView(positions, latest, frozenset(moving))


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


async def sync_positions(
    rt: Runtime, *, dry_run: bool, force: bool, cycle_id: str | None, caller: Caller
) -> SyncResult:
    args: dict[str, Any] = {"dry_run": dry_run, "force": force, **({"cycle_id": cycle_id} if cycle_id else {})}
    run = _Run(rt, args, dry_run, force, cycle_id, caller)
    async with rt.lane.hold() as conn:
        working = await orders_repo.working(conn, rt.profile.market)
        try:
            view = await read_broker(rt, working)
        except CatalystError as exc:
            reason = f"the broker could not be read ({exc}); nothing changed: run the sync again later"
            return await run.refuse(conn, reason)
        flying = in_flight(working, view, dry_run=dry_run)
        refreshed = (
            []
            if dry_run
            else [o.client_order_id for o in await record_news(rt, conn, working, view.latest, caller, tool=TOOL)]
        )
        try:
            result = await run.reconcile(conn, view.positions, flying, refreshed)
        except BookChanged as exc:
            return await run.refuse(conn, str(exc), refreshed)
        if result.changes_made:
            moved = {c.symbol for c in result.plan.changes if c.kind is not ChangeKind.PRICE}
            await protection.refit_after_sync(rt, conn, moved, caller, tool=TOOL)
        return result


class _Run:
    def __init__(
        self, rt: Runtime, args: dict[str, Any], dry_run: bool, force: bool, cycle_id: str | None, caller: Caller
    ) -> None:
        self.rt, self.args, self.dry_run, self.force = rt, args, dry_run, force
        self.cycle_id, self.caller = cycle_id, caller

    async def reconcile(
        self, conn: asyncpg.Connection, snapshot: list[BrokerPosition], flying: list[InFlight], refreshed: list[str]
    ) -> SyncResult:
        rt, market = self.rt, self.rt.profile.market
        now = rt.clock.now()
        async with conn.transaction():
            book = await book_repo.open_book(conn, market)
            plan = diff(
                book,
                snapshot,
                flying,
                rt.settings.sync.price_tolerance,
                market=market,
                lot_size=lot_lookup(market, rt.market_data.lot_size),
            )
            refused = None if self.force else self._outage(plan)
            apply = refused is None and not self.dry_run
            if apply:
                await book_repo.apply_plan(conn, market, plan, now)
                if not plan.is_empty:
                    await book_snapshot.bump_version(conn, market)
            changes = describe_changes(plan, applied=apply)
            details = [f"order {c}: new fills or status recorded from the broker" for c in refreshed]
            details += changes + describe_rest(plan)
            if not details:
                details = [f"the book matches the broker ({plan.book_size} positions)"]
            sync_id = await self._record(conn, plan, apply, refused)
            if not self.dry_run:
                if apply:
                    await book_repo.insert_audit_rows(
                        conn,
                        caller=self.caller.name,
                        role=self.caller.role,
                        tool=TOOL,
                        arguments=self.args,
                        outcomes=[f"sync {sync_id}: {c}" for c in changes],
                        cycle_id=self.cycle_id,
                    )
                summary = refused or f"{len(plan.changes)} changes applied, {len(plan.skipped)} symbols in flight"
                await audit(conn, self.caller, TOOL, self.args, f"sync {sync_id}: {summary}", self.cycle_id)
        return SyncResult(sync_id, plan, self.dry_run, apply, refused, tuple(details), tuple(refreshed))

    def _outage(self, plan: SyncPlan) -> str | None:
        s = self.rt.settings.sync
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

    async def _record(self, conn: repos.Conn, plan: SyncPlan, applied: bool, refused: str | None) -> int:
        return await repos.insert_sync_run(
            conn,
            cycle_id=self.cycle_id,
            market=self.rt.profile.market,
            dry_run=self.dry_run,
            forced=self.force,
            applied=applied,
            refused=refused,
            plan=plan_json(plan),
            at=self.rt.clock.now(),
        )

    async def refuse(self, conn: asyncpg.Connection, reason: str, refreshed: list[str] | None = None) -> SyncResult:
        """Record a run that changed no position (a failed broker call, a book that moved meanwhile)."""
        empty = SyncPlan((), 0)
        async with conn.transaction():
            sync_id = await self._record(conn, empty, False, reason)
            if not self.dry_run:
                await audit(conn, self.caller, TOOL, self.args, f"sync {sync_id}: {reason}", self.cycle_id)
        return SyncResult(sync_id, empty, self.dry_run, False, reason, (), tuple(refreshed or ()))
