"""sync_positions: make the book equal the broker's positions, or refuse and change nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.domain.models import BrokerPosition
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.reconcile.diff import Change, ChangeKind, SyncPlan, diff, looks_like_outage
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.execution import lock_book
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import repos


@dataclass(frozen=True, slots=True)
class SyncResult:
    sync_id: int
    plan: SyncPlan
    dry_run: bool
    applied: bool
    refused: str | None
    details: tuple[str, ...]


def describe(change: Change, *, applied: bool = True) -> str:
    if change.kind is ChangeKind.PHANTOM:
        what = f"{change.symbol}: in the book ({plain(change.book_quantity)}) but not at the broker"
        action = "closed"
    elif change.kind is ChangeKind.MISSING:
        what = f"{change.symbol}: at the broker ({plain(change.broker_quantity)}) but not in the book"
        action = "added"
    else:
        what = f"{change.symbol}: book {plain(change.book_quantity)}, broker {plain(change.broker_quantity)}"
        action = "set to the broker's"
    return f"{what}: {action if applied else 'would be ' + action}"


def _plan_json(plan: SyncPlan) -> list[dict[str, Any]]:
    return [
        {
            "kind": c.kind.value,
            "symbol": c.symbol,
            "book": plain(c.book_quantity),
            "broker": plain(c.broker_quantity),
        }
        for c in plan.changes
    ]


async def sync_positions(
    rt: Runtime, *, dry_run: bool, force: bool, cycle_id: str | None, caller: Caller
) -> SyncResult:
    market = rt.profile.market
    now = rt.clock.now()
    args = {"dry_run": dry_run, "force": force, **({"cycle_id": cycle_id} if cycle_id else {})}
    try:
        snapshot = await rt.broker.get_positions()
    except CatalystError as exc:
        return await _refuse(
            rt,
            f"the broker's positions could not be read ({exc}); nothing changed",
            SyncPlan((), 0),
            dry_run,
            force,
            cycle_id,
            caller,
            args,
        )
    broker = [BrokerPosition(normalise_symbol(market, b.symbol), b.quantity, b.avg_entry_price) for b in snapshot]
    async with rt.pool.acquire() as conn, conn.transaction():
        await lock_book(conn, market.value)
        book = await repos.open_positions(conn, market, for_update=True)
        skipped = await repos.symbols_with_open_orders(conn, market)
        plan = diff([p for p in book if p.symbol not in skipped], [b for b in broker if b.symbol not in skipped])
        refused = None
        if not force and looks_like_outage(plan, rt.settings.sync.outage_share, rt.settings.sync.outage_min_positions):
            refused = (
                f"the broker reports none of {len(plan.of(ChangeKind.PHANTOM))} of {plan.book_size}"
                " open positions: a probable outage; nothing changed (force=true overrides)"
            )
        apply = refused is None and not dry_run
        details = [describe(c, applied=apply) for c in plan.changes]
        details += [f"{s}: an order is in flight; left for the next sync" for s in sorted(skipped)]
        if apply:
            by_symbol = {p.symbol: p for p in book}
            for change in plan.changes:
                if change.kind is ChangeKind.PHANTOM:
                    await repos.close_position_by_sync(conn, by_symbol[change.symbol].position_id, now)
                else:
                    assert change.broker_avg_price is not None
                    await repos.set_position_by_sync(
                        conn,
                        market,
                        change.symbol,
                        change.side,
                        abs(change.broker_quantity),
                        change.broker_avg_price,
                        now,
                    )
                await audit(conn, caller, "sync_positions", args, describe(change), cycle_id)
        sync_id = await repos.insert_sync_run(
            conn,
            cycle_id=cycle_id,
            market=market,
            dry_run=dry_run,
            forced=force,
            applied=apply,
            refused=refused,
            plan=_plan_json(plan),
            at=now,
        )
        await audit(
            conn,
            caller,
            "sync_positions",
            args,
            f"sync {sync_id}: " + (refused or ("dry run" if dry_run else f"{len(plan.changes)} changes")),
            cycle_id,
        )
    return SyncResult(sync_id, plan, dry_run, apply, refused, tuple(details))


async def _refuse(
    rt: Runtime,
    reason: str,
    plan: SyncPlan,
    dry_run: bool,
    force: bool,
    cycle_id: str | None,
    caller: Caller,
    args: dict[str, Any],
) -> SyncResult:
    async with rt.pool.acquire() as conn, conn.transaction():
        sync_id = await repos.insert_sync_run(
            conn,
            cycle_id=cycle_id,
            market=rt.profile.market,
            dry_run=dry_run,
            forced=force,
            applied=False,
            refused=reason,
            plan=[],
            at=rt.clock.now(),
        )
        await audit(conn, caller, "sync_positions", args, f"sync {sync_id}: {reason}", cycle_id)
    return SyncResult(sync_id, plan, dry_run, False, reason, ())
