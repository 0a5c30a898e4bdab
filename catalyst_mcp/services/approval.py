"""check_risk: evaluate an intent against the limits and record the decision (an approval if it passes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market, OrderRole, TradingState
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.domain.records import CycleRecord
from catalyst_mcp.ports import Clock
from catalyst_mcp.risk.engine import RiskDecision, evaluate
from catalyst_mcp.risk.limits import RiskLimits
from catalyst_mcp.services.audit import Caller, call_row_of
from catalyst_mcp.services.halting import Halting
from catalyst_mcp.services.reading import SnapshotReader
from catalyst_mcp.services.workflow import refuse_outside_own_cycle
from catalyst_mcp.store import approvals
from catalyst_mcp.store.lane import Lane


@dataclass(frozen=True, slots=True)
class RiskResult:
    intent: OrderIntent
    decision: RiskDecision
    approval_id: uuid.UUID | None
    expires_at: datetime | None
    limits_version: str
    halted: str | None  # why trading was halted by this check (the daily loss limit), else None


def _checks_json(decision: RiskDecision) -> list[dict[str, Any]]:
    return [
        {"rule": c.rule, "passed": c.passed, "limit": c.limit, "actual": c.actual, "message": c.message}
        for c in decision.checks
    ]


def intent_arguments(intent: OrderIntent) -> dict[str, Any]:
    optional = (
        ("limit_price", intent.limit_price),
        ("stop_loss", intent.stop_loss),
        ("take_profit", intent.take_profit),
    )
    return {
        "symbol": intent.symbol,
        "side": intent.side.value,
        "quantity": plain(intent.quantity),
        "order_type": intent.order_type.value,
        **{k: plain(v) for k, v in optional if v is not None},
    }


@dataclass(frozen=True, slots=True)
class ApprovalService:
    lane: Lane
    reader: SnapshotReader
    halting: Halting
    clock: Clock
    market: Market
    limits: RiskLimits
    agent_id: str
    idle_after: timedelta

    async def check_risk(self, intent: OrderIntent, cycle: CycleRecord | None, caller: Caller) -> RiskResult:
        """Judge ``intent`` on the execution lane against the book, its reservations and the broker, and record
        the decision: an approval is a reservation from this moment. A loss at the daily limit halts
        trading."""
        limits = self.limits
        cycle_id = cycle.cycle_id if cycle is not None else None
        async with self.reader.holding(
            self.lane,
            intent,
            cycle_mode=cycle.mode if cycle is not None else None,
            agent_id=self.agent_id if cycle is None else None,
        ) as (conn, reading):
            if cycle is None:
                refuse_outside_own_cycle(
                    "check_risk",
                    reading.book.agent_cycle,
                    agent_id=self.agent_id,
                    now=self.clock.now(),
                    idle_after=self.idle_after,
                )
            snapshot = reading.snapshot
            decision = evaluate(snapshot, limits)
            now = self.clock.now()
            approval_id = uuid.uuid4() if decision.approved else None
            expires_at = now + timedelta(seconds=limits.approval_ttl_seconds) if decision.approved else None
            outcome = f"approved {approval_id}" if approval_id else "refused: " + "; ".join(decision.reasons)
            loss = next((c.message for c in decision.checks if c.rule == "daily_loss" and not c.passed), None)
            call = call_row_of("check_risk")
            written = await approvals.record_decision(
                conn,
                approval_id=approval_id,
                cycle_id=cycle_id,
                market=self.market,
                intent=intent,
                approved=decision.approved,
                role=OrderRole.ENTRY if snapshot.is_entry else OrderRole.EXIT,
                checks=_checks_json(decision),
                limits_version=limits.version,
                created_at=now,
                expires_at=expires_at,
                reference_price=snapshot.reference_price,
                book_version=reading.book.version,
                account=snapshot.account,
                quote=snapshot.quote,
                audited=caller.entry("check_risk", intent_arguments(intent), outcome, cycle_id),
                call=None if call is None else (call.entry("ok"), call.duration_ms()),
            )
            if call is not None:  # the call's row was written with its decision
                call.written = written
            halted = None
            if loss is not None:
                if await self.halting.halt(conn, loss, "risk", caller, "check_risk"):
                    halted = loss
            elif reading.book.state is TradingState.HALTED and reading.book.working_entries:
                await self.halting.cancel_entries(conn, caller, "check_risk")
        return RiskResult(intent, decision, approval_id, expires_at, limits.version, halted)
