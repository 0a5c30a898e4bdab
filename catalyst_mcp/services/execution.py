"""execute_trade: turn one unexpired, unused approval into exactly one broker order.

Order of work: (1) lock the approval, record the order as pending with its deterministic client_order_id,
mark the approval used, audit — one transaction; (2) submit to the broker, and after any failure look the
order up by client_order_id before anything else; (3) record the broker's answer and apply new fills to the
book under the book lock — one transaction. A replay (same approval again) resumes or returns that order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import CycleState, OrderStatus
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, InvalidInput, TemporaryFailure
from catalyst_mcp.domain.fills import new_fills
from catalyst_mcp.domain.models import BrokerOrder, Position
from catalyst_mcp.risk.engine import recheck
from catalyst_mcp.services.approval import take_snapshot
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import repos, workflow_repo
from catalyst_mcp.store.records import ApprovalRecord, OrderRecord

BOOK_LOCK_NAMESPACE = 0x0CA7
EXECUTION_LOCK_NAMESPACE = 0x0CA8


def client_order_id_for(approval_id: uuid.UUID) -> str:
    return f"cat-{approval_id.hex}"


def parse_approval_id(raw: str) -> uuid.UUID:
    try:
        value = uuid.UUID(raw)
    except (ValueError, AttributeError):
        raise InvalidInput(f"malformed approval_id {raw!r}: expected the UUID returned by check_risk") from None
    if value.version != 4 or str(value) != raw.strip().lower():
        raise InvalidInput(f"malformed approval_id {raw!r}: expected the UUID returned by check_risk")
    return value


async def lock_book(conn: repos.Conn, market: str) -> None:
    """Serialise changes to one market's book (fills and sync runs) across processes."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", BOOK_LOCK_NAMESPACE, market)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    order: OrderRecord | None
    approval: ApprovalRecord
    position: Position | None
    replayed: bool
    reason: str | None  # why no order was sent, when the re-check refused it


async def execute_trade(rt: Runtime, approval_id: uuid.UUID, cycle_id: str | None, caller: Caller) -> ExecutionResult:
    now = rt.clock.now()
    args = {"approval_id": str(approval_id), **({"cycle_id": cycle_id} if cycle_id else {})}
    async with rt.pool.acquire() as conn, conn.transaction():
        approval = await repos.lock_approval(conn, approval_id)
        if approval is None:
            raise InvalidInput(f"unknown approval {approval_id}: run check_risk first")
        if approval.cycle_id is not None:
            if cycle_id is not None and approval.cycle_id != cycle_id:
                raise InvalidInput(f"approval {approval_id} belongs to cycle {approval.cycle_id}, not {cycle_id}")
            owner = await workflow_repo.get_cycle(conn, approval.cycle_id)
            if owner is not None and owner.status is not CycleState.ACTIVE:
                raise InvalidInput(
                    f"approval {approval_id} belongs to cycle {approval.cycle_id}, which is {owner.status.value}"
                )
        existing = await repos.order_by_approval(conn, approval_id)
        if existing is None:
            if approval.used_at is not None:
                raise InvalidInput(f"approval {approval_id} was already used")
            if now >= approval.expires_at:
                raise InvalidInput(
                    f"approval {approval_id} expired at {approval.expires_at.isoformat()}; run check_risk again"
                )
            # One execution per market at a time from here to the order record: each re-check sees the
            # orders the others recorded.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", EXECUTION_LOCK_NAMESPACE, rt.profile.market.value
            )
            snapshot = await take_snapshot(rt, approval.intent, approved_reference=approval.reference_price)
            failed = recheck(snapshot, rt.settings.risk)
            if failed:
                refusal = "; ".join(c.message for c in failed)
                await audit(conn, caller, "execute_trade", args, f"refused: {refusal}", approval.cycle_id)
                return ExecutionResult(None, approval, None, False, refusal)
            is_exit = not snapshot.is_entry
            order = await repos.insert_order(
                conn,
                client_order_id=client_order_id_for(approval_id),
                approval=approval,
                cycle_id=approval.cycle_id,
                broker=rt.broker.name,
                at=now,
            )
            await repos.mark_approval_used(conn, approval_id, now)
            await audit(
                conn,
                caller,
                "execute_trade",
                args,
                f"order {order.client_order_id} recorded",
                approval.cycle_id,
            )
    replayed = existing is not None
    if existing is not None:
        order = existing
    elif is_exit:
        await cancel_blocking_orders(rt, order, caller)
    if order.status.is_open:
        order = await _submit_and_record(rt, approval, order, caller)
    async with rt.pool.acquire() as conn:
        position = next(
            (p for p in await repos.open_positions(conn, rt.profile.market) if p.symbol == order.symbol), None
        )
    return ExecutionResult(order, approval, position, replayed, None)


async def cancel_blocking_orders(rt: Runtime, order: OrderRecord, caller: Caller) -> None:
    """Before an exit: cancel the symbol's other working orders at the broker (stale ones would hold the
    shares the exit needs) and wait for each cancel to be final; record the outcome of our own."""
    for working in await rt.broker.get_open_orders(order.symbol):
        if working.client_order_id == order.client_order_id:
            continue
        final = await rt.broker.cancel_order(working.broker_order_id)
        async with rt.pool.acquire() as conn:
            ours = await repos.order_by_client_id(conn, final.client_order_id)
            approval = None if ours is None else await repos.lock_approval(conn, ours.approval_id)
        if ours is not None and approval is not None:
            await record_broker_order(rt, ours, final, approval, caller)  # keeps any fills it had
            continue
        async with rt.pool.acquire() as conn, conn.transaction():
            await audit(
                conn,
                caller,
                "execute_trade",
                {"cancel": final.client_order_id},
                f"external working order {final.client_order_id} {final.status.value} before the exit"
                f" {order.client_order_id}",
                order.cycle_id,
            )


async def _submit_and_record(rt: Runtime, approval: ApprovalRecord, order: OrderRecord, caller: Caller) -> OrderRecord:
    broker_order: BrokerOrder | None
    if order.status is OrderStatus.PENDING:
        broker_order = await rt.broker.get_order_by_client_id(order.client_order_id)
        if broker_order is None:
            try:
                broker_order = await rt.broker.submit_order(approval.intent, order.client_order_id)
            except BrokerRejected as exc:
                # A clear refusal; still look first, in case an earlier attempt of ours got through.
                broker_order = await rt.broker.get_order_by_client_id(order.client_order_id)
                if broker_order is None:
                    return await _record_rejection(rt, order, str(exc), caller)
            except CatalystError:
                # An ambiguous failure: the broker may have the order. Look before anything else.
                broker_order = await rt.broker.get_order_by_client_id(order.client_order_id)
                if broker_order is None:
                    raise TemporaryFailure(
                        f"order {order.client_order_id} was not confirmed by the broker; "
                        "call execute_trade again with the same approval"
                    ) from None
    else:
        broker_order = await rt.broker.get_order_by_client_id(order.client_order_id)
        if broker_order is None:
            return order
    return await record_broker_order(rt, order, broker_order, approval, caller)


async def _record_rejection(rt: Runtime, order: OrderRecord, reason: str, caller: Caller) -> OrderRecord:
    async with rt.pool.acquire() as conn, conn.transaction():
        updated = await repos.update_order(
            conn,
            order.order_id,
            status=OrderStatus.REJECTED,
            broker_order_id=None,
            filled_quantity=order.filled_quantity,
            avg_fill_price=order.avg_fill_price,
            reject_reason=reason,
            at=rt.clock.now(),
        )
        await audit(
            conn,
            caller,
            "execute_trade",
            {"client_order_id": order.client_order_id},
            f"rejected: {reason}",
            order.cycle_id,
        )
    return updated


async def record_broker_order(
    rt: Runtime,
    order: OrderRecord,
    broker_order: BrokerOrder,
    approval: ApprovalRecord,
    caller: Caller,
    *,
    tool: str = "execute_trade",
) -> OrderRecord:
    """Record the broker's view of an order and move the book by its new fills only (audited as ``tool``)."""
    now = rt.clock.now()
    intent = approval.intent
    async with rt.pool.acquire() as conn, conn.transaction():
        await lock_book(conn, rt.profile.market.value)
        locked = await repos.lock_order(conn, order.order_id)
        applied = Decimal(0)
        known = await conn.fetch("SELECT fill_id FROM fills WHERE order_id = $1", order.order_id)
        fresh = new_fills(broker_order, locked.filled_quantity, locked.avg_fill_price, {r[0] for r in known}, now)
        for fill in fresh:
            if await repos.insert_fill(conn, order.order_id, fill):
                await repos.apply_fill_to_book(conn, rt.profile.market, fill, intent.stop_loss, intent.take_profit)
                applied += fill.quantity
        reason = "rejected by the broker" if broker_order.status is OrderStatus.REJECTED else None
        updated = await repos.update_order(
            conn,
            order.order_id,
            status=broker_order.status,
            broker_order_id=broker_order.broker_order_id,
            filled_quantity=broker_order.filled_quantity,
            avg_fill_price=broker_order.avg_fill_price,
            reject_reason=reason,
            at=now,
        )
        if applied or updated.status is not order.status:
            await audit(
                conn,
                caller,
                tool,
                {"approval_id": str(approval.approval_id)},
                f"order {order.client_order_id} {updated.status.value}, filled {plain(applied)}",
                order.cycle_id,
            )
    return updated
