"""execute_trade: turn one unexpired, unused approval into exactly one broker order, on the execution lane.

Holding the market's lane (``store/lane.py``): read the snapshot (the book in one statement, the approval's own
reservation left out), run every re-check, record the order as pending with its deterministic client_order_id
and mark the approval used — one commit, before anything is sent — then send it, and book the broker's answer
and its fills in a second commit. A first attempt is sent without looking first: the book proves none was
made. After an ambiguous answer the order is looked up by client_order_id; a replay of an order the broker
never received is judged again exactly like a first execution (expiry, trading state, every re-check) and
ends ``rejected`` with the reason when it may no longer be sent. An exit first clears the protective legs
that hold its shares and re-protects what is left afterwards (``services/protection.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from catalyst_mcp.domain.enums import CycleMode, CycleState, OrderRole, OrderStatus, TradingState
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, InvalidInput, TemporaryFailure
from catalyst_mcp.domain.models import BrokerOrder, Position, Quote
from catalyst_mcp.risk.engine import recheck
from catalyst_mcp.services import halting, protection, workflow
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.booking import record_answer, record_unsent
from catalyst_mcp.services.reading import Reading, read_snapshot
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import orders_repo, repos
from catalyst_mcp.store.records import ApprovalRecord, AuditEntry, OrderRecord

TOOL = "execute_trade"


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


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    order: OrderRecord | None
    approval: ApprovalRecord
    position: Position | None
    replayed: bool
    reason: str | None  # why no order was sent (a re-check refused it), or why the order was rejected
    quote: Quote | None = None  # the quote the re-check used, when it ran
    protection: tuple[Decimal | None, Decimal | None] = (None, None)  # the position's working stop and target


async def execute_trade(rt: Runtime, approval_id: uuid.UUID, cycle_id: str | None, caller: Caller) -> ExecutionResult:
    async with rt.lane.hold() as conn:
        found = await orders_repo.execution_of(conn, approval_id, rt.settings.agent_id, rt.profile.market)
        approval, order = found.approval, found.order
        if approval is None or approval.market is not rt.profile.market:
            raise InvalidInput(f"unknown approval {approval_id}: run check_risk first")
        mode = _cycle_of(approval, cycle_id, found.cycle)
        if cycle_id is None:
            workflow.refuse_outside_own_cycle(rt, TOOL, found.agent_cycle)
        if order is None:
            if approval.used_at is not None:
                raise InvalidInput(f"approval {approval_id} was already used")
            if rt.clock.now() >= approval.expires_at:
                raise InvalidInput(
                    f"approval {approval_id} expired at {approval.expires_at.isoformat()}; run check_risk again"
                )
            return await _first_execution(rt, conn, approval, mode, caller)
        return await _replay(rt, conn, approval, order, mode, caller)


def _cycle_of(
    approval: ApprovalRecord, cycle_id: str | None, owner_cycle: tuple[CycleMode, CycleState] | None
) -> CycleMode | None:
    """An approval executes only in the cycle it was issued in, or outside any cycle if it was issued outside
    one; that cycle must still be active. Returns the cycle's mode."""
    owner = approval.cycle_id
    if owner != cycle_id:
        if owner is None:
            raise InvalidInput(
                f"approval {approval.approval_id} was issued outside any cycle, not in {cycle_id}:"
                " execute it without cycle_id"
            )
        asked = "outside any cycle" if cycle_id is None else f"in {cycle_id}"
        raise InvalidInput(
            f"approval {approval.approval_id} belongs to cycle {owner}, not {asked}: execute it with cycle_id={owner}"
        )
    if owner is None:
        return None
    if owner_cycle is None or owner_cycle[1] is not CycleState.ACTIVE:
        status = "gone" if owner_cycle is None else owner_cycle[1].value
        raise InvalidInput(f"approval {approval.approval_id} belongs to cycle {owner}, which is {status}")
    return owner_cycle[0]


async def _judge(
    rt: Runtime, conn: asyncpg.Connection, approval: ApprovalRecord, mode: CycleMode | None, caller: Caller
) -> tuple[Reading, str | None]:
    """The re-checks of an approval against a fresh snapshot: the reading, and why it may not be sent (None:
    send it). The account it was approved with is reused while the book has not moved and it is recent."""
    known = None
    age = (rt.clock.now() - approval.created_at).total_seconds()
    if 0 <= age <= rt.settings.account_reuse_seconds and approval.account is not None:
        known = (approval.book_version or 0, approval.account)
    quote = approval.quote if 0 <= age <= rt.settings.quote_reuse_seconds else None
    reading = await read_snapshot(
        rt,
        conn,
        approval.intent,
        cycle_mode=mode,
        exclude_approval=approval.approval_id,
        approved_reference=approval.reference_price,
        known_account=known,
        known_quote=quote,
    )
    if reading.book.state is TradingState.HALTED and reading.book.working_entries:
        await halting.cancel_entries(rt, conn, caller, TOOL)
    failed = recheck(reading.snapshot, rt.settings.risk)
    return reading, ("; ".join(c.message for c in failed) if failed else None)


async def _first_execution(
    rt: Runtime, conn: asyncpg.Connection, approval: ApprovalRecord, mode: CycleMode | None, caller: Caller
) -> ExecutionResult:
    args = _args(approval)
    reading, refusal = await _judge(rt, conn, approval, mode, caller)
    if refusal is not None:
        async with conn.transaction():
            await audit(conn, caller, TOOL, args, f"refused: {refusal}", approval.cycle_id)
        return ExecutionResult(None, approval, None, False, refusal, reading.snapshot.quote)
    client_order_id = client_order_id_for(approval.approval_id)
    order = await orders_repo.record_intent(
        conn,
        client_order_id=client_order_id,
        approval=approval,
        role=OrderRole.ENTRY if reading.snapshot.is_entry else OrderRole.EXIT,
        broker=rt.broker.name,
        at=rt.clock.now(),
        audit=AuditEntry(caller.name, caller.role, TOOL, args, f"order {client_order_id} recorded", approval.cycle_id),
    )
    return await _send(rt, conn, approval, order, reading, caller, replayed=False)


async def _replay(
    rt: Runtime,
    conn: asyncpg.Connection,
    approval: ApprovalRecord,
    order: OrderRecord,
    mode: CycleMode | None,
    caller: Caller,
) -> ExecutionResult:
    """The same approval again: return its order as it stands now; resume it if it never reached the broker."""
    if order.status is not OrderStatus.PENDING:
        if order.status.is_open:
            found = await rt.broker.get_order_by_client_id(order.client_order_id)
            if found is not None:
                order = await record_answer(rt, conn, order, found, caller, tool=TOOL)
        return await _result(rt, conn, approval, order, replayed=True)
    try:
        found = await rt.broker.get_order_by_client_id(order.client_order_id)
    except CatalystError as exc:  # it stays pending: nothing is sent before the broker can say
        raise TemporaryFailure(
            f"order {order.client_order_id} could not be looked up at the broker ({exc}); "
            "call execute_trade again with the same approval"
        ) from None
    if found is not None:
        order = await record_answer(rt, conn, order, found, caller, tool=TOOL)
        if order.role is OrderRole.EXIT:
            await protection.reprotect(rt, conn, order.symbol, protection.Levels(), caller, tool=TOOL)
        return await _result(rt, conn, approval, order, replayed=True)
    # The broker never received it: judged again exactly as a first execution would be.
    if rt.clock.now() >= approval.expires_at:
        reason = f"approval expired at {approval.expires_at.isoformat()} before the order reached the broker"
        order = await record_unsent(rt, conn, order, OrderStatus.REJECTED, reason, caller)
        return await _result(rt, conn, approval, order, replayed=True)
    reading, refusal = await _judge(rt, conn, approval, mode, caller)
    if refusal is not None:
        order = await record_unsent(rt, conn, order, OrderStatus.REJECTED, refusal, caller)
        return await _result(rt, conn, approval, order, replayed=True, quote=reading.snapshot.quote)
    return await _send(rt, conn, approval, order, reading, caller, replayed=True)


async def _send(
    rt: Runtime,
    conn: asyncpg.Connection,
    approval: ApprovalRecord,
    order: OrderRecord,
    reading: Reading,
    caller: Caller,
    *,
    replayed: bool,
) -> ExecutionResult:
    """Send an order no earlier attempt of which reached the broker, and book the answer."""
    quote = reading.snapshot.quote
    levels = protection.Levels()
    if order.role is OrderRole.EXIT:
        levels = await protection.clear_for_exit(rt, conn, order, caller, tool=TOOL)
    answer: BrokerOrder | None
    try:
        answer = await rt.broker.submit_order(approval.intent, order.client_order_id)
    except BrokerRejected as exc:
        answer = None
        order = await record_unsent(rt, conn, order, OrderStatus.REJECTED, str(exc), caller)
    except CatalystError as exc:
        answer = await _look_up(rt, order.client_order_id)
        if answer is None:
            if levels.any:
                await protection.reprotect(rt, conn, order.symbol, levels, caller, tool=TOOL)
            raise TemporaryFailure(
                f"order {order.client_order_id} was not confirmed by the broker ({exc}); "
                "call execute_trade again with the same approval"
            ) from None
    if answer is not None:
        order = await record_answer(rt, conn, order, answer, caller, tool=TOOL)
    if levels.any:
        await protection.reprotect(rt, conn, order.symbol, levels, caller, tool=TOOL)
    return await _result(rt, conn, approval, order, replayed=replayed, quote=quote)


async def _look_up(rt: Runtime, client_order_id: str) -> BrokerOrder | None:
    """After an ambiguous submit: the order, if the broker has it; None if it does not or cannot say now."""
    try:
        return await rt.broker.get_order_by_client_id(client_order_id)
    except CatalystError:
        return None


async def _result(
    rt: Runtime,
    conn: asyncpg.Connection,
    approval: ApprovalRecord,
    order: OrderRecord,
    *,
    replayed: bool,
    quote: Quote | None = None,
) -> ExecutionResult:
    position = await repos.position_of(conn, rt.profile.market, order.symbol)
    legs = await orders_repo.working_legs(conn, rt.profile.market, order.symbol) if position else {}
    reason = order.reject_reason if order.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED) else None
    protection = legs.get(order.symbol, (None, None))
    return ExecutionResult(order, approval, position, replayed, reason, quote, protection)


def _args(approval: ApprovalRecord) -> dict[str, str]:
    return {"approval_id": str(approval.approval_id), **({"cycle_id": approval.cycle_id} if approval.cycle_id else {})}
