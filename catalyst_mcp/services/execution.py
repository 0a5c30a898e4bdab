"""execute_trade: turn one unexpired, unused approval into exactly one broker order, on the execution lane.

Holding the market's lane (``store/lane.py``): read the snapshot (the book in one statement, the approval's own
reservation left out), run every re-check, record the order as pending with its deterministic client_order_id
and mark the approval used — one commit, before anything is sent — then send it, and book the broker's answer
and its fills in a second commit. A first attempt is sent without looking first: the book proves none was
made. After an ambiguous answer the order is looked up by client_order_id; a replay of an order the broker
never received is judged again exactly like a first execution (expiry, trading state, every re-check) and
ends ``rejected`` with the reason when it may no longer be sent. An exit first clears the protective legs
that hold its shares and re-protects what is left afterwards (``services/protection.py``).

An order worth more than ``confirm_notional_above``, and every order in live mode, is sent only once
confirmed: by the client's user through MCP elicitation (the transport asks, this service is told the answer),
or, for a client that cannot be asked, by a second call carrying the one-time token its first call was refused
with (only the token's SHA-256 is stored, on the approval).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import CycleMode, CycleState, Market, OrderRole, OrderStatus, TradingState
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, InvalidInput, TemporaryFailure, shown
from catalyst_mcp.domain.models import BrokerOrder, Position, Quote
from catalyst_mcp.domain.records import ApprovalRecord, OrderRecord
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.risk.engine import recheck
from catalyst_mcp.risk.limits import RiskLimits
from catalyst_mcp.services.audit import Caller, audit, call_row_of
from catalyst_mcp.services.booking import UNREAD, Booking
from catalyst_mcp.services.halting import Halting
from catalyst_mcp.services.protection import Levels, Protection
from catalyst_mcp.services.reading import Plan, Reading, SnapshotReader
from catalyst_mcp.services.workflow import refuse_outside_own_cycle
from catalyst_mcp.store import approvals, book_snapshot, orders
from catalyst_mcp.store.db import Conn, Database, Row, transaction
from catalyst_mcp.store.lane import Lane

TOOL = "execute_trade"


def client_order_id_for(approval_id: uuid.UUID) -> str:
    return f"cat-{approval_id.hex}"


def parse_approval_id(raw: str) -> uuid.UUID:
    try:
        value = uuid.UUID(raw)
    except (ValueError, AttributeError):
        raise InvalidInput(f"malformed approval_id {shown(raw)}: expected the UUID returned by check_risk") from None
    if value.version != 4 or str(value) != raw.strip().lower():
        raise InvalidInput(f"malformed approval_id {shown(raw)}: expected the UUID returned by check_risk")
    return value


class Consent(StrEnum):
    """What the client's user said when asked to confirm an order through the client (MCP elicitation)."""

    NOT_ASKED = "not_asked"
    GIVEN = "given"
    REFUSED = "refused"


def confirmation_reason(approval: ApprovalRecord, limits: RiskLimits, *, live: bool, currency: str) -> str | None:
    """Why the order of an approval must be confirmed before it is sent, or None when it need not be."""
    if live:
        return "every order is confirmed in live trading"
    threshold = limits.confirm_notional_above
    price = approval.intent.limit_price or approval.reference_price
    if threshold is None or price is None:
        return None
    value = approval.intent.quantity * price
    if value <= threshold:
        return None
    return f"its value, {plain(value.quantize(Decimal('0.01')))} {currency}, is above {plain(threshold)} {currency}"


def confirmation_question(approval: ApprovalRecord, reason: str, *, live: bool, currency: str) -> str:
    """What the client's user is asked."""
    intent = approval.intent
    price = "at market" if intent.limit_price is None else f"limit {plain(intent.limit_price)} {currency}"
    account = "LIVE account" if live else "paper account"
    return (
        f"Send {intent.side.value.upper()} {plain(intent.quantity)} {intent.symbol} {price} on the {account}? "
        f"Confirmation is needed because {reason}."
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    order: OrderRecord | None
    approval: ApprovalRecord
    position: Position | None
    replayed: bool
    reason: str | None  # why no order was sent (a re-check refused it), or why the order was rejected
    quote: Quote | None = None  # the quote the re-check used, when it ran
    protection: tuple[Decimal | None, Decimal | None] = (None, None)  # the position's working stop and target
    confirmation_token: str | None = None  # refused until confirmed: the one-time token that confirms it


def _ended_cycle(
    approval: ApprovalRecord,
    order: OrderRecord | None,
    cycle_id: str | None,
    owner_cycle: tuple[CycleMode, CycleState] | None,
) -> str | None:
    """The approval's cycle, when a replay asks to settle its order after that cycle ended (asked outside any
    cycle, since an ended cycle takes no calls); else None."""
    owner = approval.cycle_id
    if order is None or cycle_id is not None or owner is None:
        return None
    if owner_cycle is not None and owner_cycle[1] is CycleState.ACTIVE:
        return None
    return owner


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


@dataclass(frozen=True, slots=True)
class ExecutionService:
    db: Database
    lane: Lane
    reader: SnapshotReader
    booking: Booking
    protection: Protection
    halting: Halting
    broker: Broker
    market_data: MarketData
    clock: Clock
    market: Market
    limits: RiskLimits
    agent_id: str
    idle_after: timedelta
    quote_reuse: timedelta
    live: bool
    currency: str

    async def question_for(self, approval_id: uuid.UUID) -> str | None:
        """What to ask the client's user before this approval's order may be sent; None when nothing need be
        asked (no confirmation needed, an order already made of it, or no such approval)."""
        async with self.db.connection() as conn:
            found = await orders.execution_of(conn, approval_id, self.agent_id, self.market)
        approval = found.approval
        if approval is None or found.order is not None or approval.used_at is not None:
            return None
        reason = confirmation_reason(approval, self.limits, live=self.live, currency=self.currency)
        if reason is None:
            return None
        return confirmation_question(approval, reason, live=self.live, currency=self.currency)

    async def execute_trade(
        self,
        approval_id: uuid.UUID,
        cycle_id: str | None,
        caller: Caller,
        *,
        consent: Consent = Consent.NOT_ASKED,
        confirmation: str | None = None,
    ) -> ExecutionResult:
        plans: list[Plan] = []

        async def query() -> tuple[str, tuple[object, ...]]:
            # The approval and, for its re-check, the book: one statement, which also takes the lane's lock.
            plans.append(await self.reader.plan(approval_id, self.agent_id))
            return book_snapshot.snapshot_with_execution(plans[-1].query)

        async with self.lane.hold_reading(query) as (conn, row):
            found = orders.execution_from(row)
            approval, order = found.approval, found.order
            if approval is None or approval.market is not self.market:
                raise InvalidInput(f"unknown approval {approval_id}: run check_risk first")
            ended = _ended_cycle(approval, order, cycle_id, found.cycle)
            if ended is not None and order is not None:  # an order of an ended cycle is settled, never sent
                return await self._replay(conn, approval, order, None, caller, ended=ended)
            mode = _cycle_of(approval, cycle_id, found.cycle)
            if cycle_id is None:
                refuse_outside_own_cycle(
                    TOOL, found.agent_cycle, agent_id=self.agent_id, now=self.clock.now(), idle_after=self.idle_after
                )
            if order is None:
                if approval.used_at is not None:
                    raise InvalidInput(f"approval {approval_id} was already used")
                if self.clock.now() >= approval.expires_at:
                    raise InvalidInput(
                        f"approval {approval_id} expired at {approval.expires_at.isoformat()}; run check_risk again"
                    )
                unconfirmed = await self._unconfirmed(conn, approval, caller, consent, confirmation)
                if unconfirmed is not None:
                    return unconfirmed
                result = await self._first_execution(conn, approval, mode, caller, (plans[-1], row))
            else:
                result = await self._replay(conn, approval, order, mode, caller)
        if result.quote is None and result.position is not None:  # a replay: the re-check read no quote
            result = replace(result, quote=await self.market_data.get_quote(approval.intent.symbol))
        return result

    async def _unconfirmed(
        self, conn: Conn, approval: ApprovalRecord, caller: Caller, consent: Consent, confirmation: str | None
    ) -> ExecutionResult | None:
        """None when the approval's order may be sent as far as confirmation goes; else the refusal, audited:
        declined by the client's user, or (nobody asked) a new one-time token that confirms it."""
        reason = confirmation_reason(approval, self.limits, live=self.live, currency=self.currency)
        if reason is None or consent is Consent.GIVEN:
            return None
        args = _args(approval)
        if consent is Consent.REFUSED:
            refusal = "the order was not confirmed: the client's user declined it"
            async with transaction(conn):
                await audit(conn, caller, TOOL, args, f"refused: {refusal}", approval.cycle_id)
            return ExecutionResult(None, approval, None, False, refusal)
        if confirmation is not None:
            if approval.confirm_sha256 is not None and hmac.compare_digest(
                _digest(confirmation), approval.confirm_sha256
            ):
                return None
            raise InvalidInput(
                f"confirmation does not match approval {approval.approval_id}: pass the confirmation_token of its"
                " latest refusal, or call execute_trade without confirmation for a new one"
            )
        token = secrets.token_urlsafe(24)
        refusal = (
            f"the order needs confirmation because {reason}: call execute_trade again with the same approval_id"
            " and confirmation set to confirmation_token, once the user has agreed"
        )
        entry = caller.entry(TOOL, args, "refused: confirmation required", approval.cycle_id)
        await approvals.set_confirmation(conn, approval.approval_id, _digest(token), entry)
        return ExecutionResult(None, approval, None, False, refusal, confirmation_token=token)

    async def _judge(
        self,
        conn: Conn,
        approval: ApprovalRecord,
        mode: CycleMode | None,
        caller: Caller,
        read: tuple[Plan, Row] | None = None,
    ) -> tuple[Reading, str | None]:
        """The re-checks of an approval against a fresh snapshot (``read``: the one read with the approval on
        this hold, else one read now): the reading, and why it may not be sent (None: send it). The quote it
        was approved at is reused while it is recent, so an order sized at a limit is judged at the price it was
        sized at; the account comes from the views (``store/views.py``)."""
        age = self.clock.now() - approval.created_at
        known_quote = approval.quote if timedelta(0) <= age < self.quote_reuse else None
        if read is not None:
            plan, row = read
            reading = await self.reader.complete(
                conn,
                plan,
                approval.intent,
                book_snapshot.snapshot_of(row, approval.intent.symbol),
                cycle_mode=mode,
                approved_reference=approval.reference_price,
                known_quote=known_quote,
            )
        else:
            reading = await self.reader.read(
                conn,
                approval.intent,
                cycle_mode=mode,
                exclude_approval=approval.approval_id,
                approved_reference=approval.reference_price,
                known_quote=known_quote,
            )
        if reading.book.state is TradingState.HALTED and reading.book.working_entries:
            await self.halting.cancel_entries(conn, caller, TOOL)
        failed = recheck(reading.snapshot, self.limits)
        return reading, ("; ".join(c.message for c in failed) if failed else None)

    async def _first_execution(
        self,
        conn: Conn,
        approval: ApprovalRecord,
        mode: CycleMode | None,
        caller: Caller,
        read: tuple[Plan, Row],
    ) -> ExecutionResult:
        args = _args(approval)
        reading, refusal = await self._judge(conn, approval, mode, caller, read)
        if refusal is not None:
            async with transaction(conn):
                await audit(conn, caller, TOOL, args, f"refused: {refusal}", approval.cycle_id)
            return ExecutionResult(None, approval, None, False, refusal, reading.snapshot.quote)
        client_order_id = client_order_id_for(approval.approval_id)
        order = await orders.record_intent(
            conn,
            client_order_id=client_order_id,
            approval=approval,
            role=OrderRole.ENTRY if reading.snapshot.is_entry else OrderRole.EXIT,
            broker=self.broker.name,
            at=self.clock.now(),
            audited=caller.entry(TOOL, args, f"order {client_order_id} recorded", approval.cycle_id),
        )
        return await self._send(conn, approval, order, reading, caller, replayed=False)

    async def _replay(
        self,
        conn: Conn,
        approval: ApprovalRecord,
        order: OrderRecord,
        mode: CycleMode | None,
        caller: Caller,
        *,
        ended: str | None = None,
    ) -> ExecutionResult:
        """The same approval again: return its order as it stands now; resume it if it never reached the broker
        (unless its cycle ``ended``: then it ends rejected)."""
        if order.status is not OrderStatus.PENDING:
            if order.status.is_open:
                found = await self.broker.get_order_by_client_id(order.client_order_id)
                if found is not None:
                    order = await self.booking.record_answer(conn, order, found, caller, tool=TOOL)
            return await self._result(conn, approval, order, replayed=True)
        try:
            found = await self.broker.get_order_by_client_id(order.client_order_id)
        except CatalystError as exc:  # it stays pending: nothing is sent before the broker can say
            raise TemporaryFailure(
                f"order {order.client_order_id} could not be looked up at the broker ({exc}); "
                "call execute_trade again with the same approval"
            ) from None
        if found is not None:
            order = await self.booking.record_answer(conn, order, found, caller, tool=TOOL)
            if order.role is OrderRole.EXIT:
                await self.protection.reprotect(conn, order.symbol, Levels(), caller, tool=TOOL)
            return await self._result(conn, approval, order, replayed=True)
        # The broker never received it: judged again exactly as a first execution would be.
        if ended is not None or self.clock.now() >= approval.expires_at:
            reason = (
                f"cycle {ended} ended before the order reached the broker"
                if ended is not None
                else f"approval expired at {approval.expires_at.isoformat()} before the order reached the broker"
            )
            order = await self._end_unsent(conn, order, reason, caller)
            return await self._result(conn, approval, order, replayed=True)
        reading, refusal = await self._judge(conn, approval, mode, caller)
        if refusal is not None:
            order = await self._end_unsent(conn, order, refusal, caller)
            return await self._result(conn, approval, order, replayed=True, quote=reading.snapshot.quote)
        return await self._send(conn, approval, order, reading, caller, replayed=True)

    async def _end_unsent(self, conn: Conn, order: OrderRecord, reason: str, caller: Caller) -> OrderRecord:
        """End an order that never reached the broker; an exit's position, whose legs it may have cleared
        before it was interrupted, is protected again at its own levels."""
        order = await self.booking.record_unsent(conn, order, OrderStatus.REJECTED, reason, caller)
        if order.role is OrderRole.EXIT:
            await self.protection.protect_if_bare(conn, order.symbol, caller, tool=TOOL)
        return order

    async def _send(
        self,
        conn: Conn,
        approval: ApprovalRecord,
        order: OrderRecord,
        reading: Reading,
        caller: Caller,
        *,
        replayed: bool,
    ) -> ExecutionResult:
        """Send an order no earlier attempt of which reached the broker, and book the answer."""
        quote = reading.snapshot.quote
        levels = Levels()
        if order.role is OrderRole.EXIT:
            levels = await self.protection.clear_for_exit(conn, order, caller, tool=TOOL)
        answer: BrokerOrder | None
        try:
            answer = await self.broker.submit_order(approval.intent, order.client_order_id)
        except BrokerRejected as exc:
            answer = None
            order = await self.booking.record_unsent(conn, order, OrderStatus.REJECTED, str(exc), caller)
        except CatalystError as exc:
            answer = await self._look_up(order.client_order_id)
            if answer is None:
                if levels.any:
                    await self.protection.reprotect(conn, order.symbol, levels, caller, tool=TOOL)
                raise TemporaryFailure(
                    f"order {order.client_order_id} was not confirmed by the broker ({exc}); "
                    "call execute_trade again with the same approval"
                ) from None
        if answer is not None:
            # An entry moves the position the snapshot read on this hold: nothing has moved it since.
            entry = order.role is OrderRole.ENTRY
            held = reading.book.positions.get(order.symbol) if entry else UNREAD
            # An entry's call ends with its booking (nothing is re-protected after it): its row is written there.
            call = call_row_of(TOOL) if entry else None
            order = await self.booking.record_answer(conn, order, answer, caller, tool=TOOL, held=held, call=call)
        if levels.any:
            await self.protection.reprotect(conn, order.symbol, levels, caller, tool=TOOL)
        return await self._result(conn, approval, order, replayed=replayed, quote=quote)

    async def _look_up(self, client_order_id: str) -> BrokerOrder | None:
        """After an ambiguous submit: the order, if the broker has it; None if it does not or cannot say now."""
        try:
            return await self.broker.get_order_by_client_id(client_order_id)
        except CatalystError:
            return None

    async def _result(
        self,
        conn: Conn,
        approval: ApprovalRecord,
        order: OrderRecord,
        *,
        replayed: bool,
        quote: Quote | None = None,
    ) -> ExecutionResult:
        position, protected = await book_snapshot.position_with_legs(conn, self.market, order.symbol)
        reason = order.reject_reason if order.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED) else None
        return ExecutionResult(order, approval, position, replayed, reason, quote, protected)


def _args(approval: ApprovalRecord) -> dict[str, str]:
    return {"approval_id": str(approval.approval_id), **({"cycle_id": approval.cycle_id} if approval.cycle_id else {})}
