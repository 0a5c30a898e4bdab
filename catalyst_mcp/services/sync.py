"""sync_positions: make the book equal the broker's positions, or refuse and change nothing.

1. Read the broker first — every working order of ours, then the positions. A failed call ends the run
   here: a refused run is recorded and nothing changes.
2. Record what the broker reports for those orders (new fills move the book; a dry run only notes them).
3. In one transaction holding the book lock: read the book, diff it against the snapshot, leaving every
   symbol with an order in flight alone; refuse a plan that looks like an outage unless forced; apply the plan
   set-based; write an audit row per change and the sync_runs row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.domain.models import BrokerPosition
from catalyst_mcp.markets.lots import lot_lookup
from catalyst_mcp.reconcile.describe import describe_changes, describe_rest, plan_json
from catalyst_mcp.reconcile.diff import diff, looks_like_outage
from catalyst_mcp.reconcile.plan import ChangeKind, InFlight, SyncPlan
from catalyst_mcp.services import orders
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.execution import lock_book
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import book_repo, repos
from catalyst_mcp.store.book_repo import BookChanged


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


async def sync_positions(
    rt: Runtime, *, dry_run: bool, force: bool, cycle_id: str | None, caller: Caller
) -> SyncResult:
    args: dict[str, Any] = {"dry_run": dry_run, "force": force, **({"cycle_id": cycle_id} if cycle_id else {})}
    run = _Run(rt, args, dry_run, force, cycle_id, caller)
    try:
        watermark, working = await orders.fetch_working(rt)
        snapshot = await rt.broker.get_positions()
    except CatalystError as exc:
        return await run.refuse(f"the broker could not be read ({exc}); nothing changed: run the sync again later")
    # An order still working (or unknown to the broker yet) may fill between the snapshot and our lock, so its
    # symbol is left alone whatever the order's status is by then; in a dry run, so is one with unrecorded fills.
    pending = [
        InFlight(w.order.symbol, w.order.client_order_id)
        for w in working
        if w.broker is None or w.broker.status.is_open or (dry_run and w.has_news)
    ]
    refreshed = [] if dry_run else [o.client_order_id for o in await orders.record_news(rt, working, caller)]
    try:
        return await run.reconcile(snapshot, watermark, pending, refreshed)
    except BookChanged as exc:
        return await run.refuse(str(exc), refreshed)


class _Run:
    def __init__(
        self, rt: Runtime, args: dict[str, Any], dry_run: bool, force: bool, cycle_id: str | None, caller: Caller
    ) -> None:
        self.rt, self.args, self.dry_run, self.force = rt, args, dry_run, force
        self.cycle_id, self.caller = cycle_id, caller

    async def reconcile(
        self, snapshot: list[BrokerPosition], watermark: int, pending: list[InFlight], refreshed: list[str]
    ) -> SyncResult:
        rt, market = self.rt, self.rt.profile.market
        now = rt.clock.now()
        async with rt.pool.acquire() as conn, conn.transaction():
            await lock_book(conn, market.value)
            book = await book_repo.open_book(conn, market)
            flying = await book_repo.in_flight(conn, market, watermark) + pending
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
                        tool="sync_positions",
                        arguments=self.args,
                        outcomes=[f"sync {sync_id}: {c}" for c in changes],
                        cycle_id=self.cycle_id,
                    )
                summary = refused or f"{len(plan.changes)} changes applied, {len(plan.skipped)} symbols in flight"
                await audit(conn, self.caller, "sync_positions", self.args, f"sync {sync_id}: {summary}", self.cycle_id)
        return SyncResult(sync_id, plan, self.dry_run, apply, refused, tuple(details), tuple(refreshed))

    def _outage(self, plan: SyncPlan) -> str | None:
        s = self.rt.settings.sync
        if not looks_like_outage(plan, s.outage_share, s.outage_min_positions):
            return None
        closing = len(plan.of(ChangeKind.PHANTOM))
        return (
            f"the broker does not report {closing} of the book's {plan.book_size} open positions: a probable"
            f" outage (more than {plain(s.outage_share * 100)}% and at least {s.outage_min_positions});"
            " no position changed. Check the broker, then sync again, or force=true if they really are gone"
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

    async def refuse(self, reason: str, refreshed: list[str] | None = None) -> SyncResult:
        """Record a run that changed no position (a failed broker call, a book that moved meanwhile)."""
        empty = SyncPlan((), 0)
        async with self.rt.pool.acquire() as conn, conn.transaction():
            sync_id = await self._record(conn, empty, False, reason)
            if not self.dry_run:
                await audit(conn, self.caller, "sync_positions", self.args, f"sync {sync_id}: {reason}", self.cycle_id)
        return SyncResult(sync_id, empty, self.dry_run, False, reason, (), tuple(refreshed or ()))
