"""check_risk: evaluate an intent against the limits and record the decision (an approval if it passes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.risk.engine import RiskDecision, RiskSnapshot, evaluate
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import repos


@dataclass(frozen=True, slots=True)
class RiskResult:
    intent: OrderIntent
    decision: RiskDecision
    approval_id: uuid.UUID | None
    expires_at: datetime | None
    limits_version: str


async def take_snapshot(rt: Runtime, intent: OrderIntent) -> RiskSnapshot:
    """Read everything the rules need, concurrently."""
    results: dict[str, Any] = {}

    async def fetch(key: str, fn: Any) -> None:
        results[key] = await fn()

    async def book() -> dict[str, Any]:
        async with rt.pool.acquire() as conn:
            positions = await repos.open_positions(conn, rt.profile.market)
            state = await repos.trading_state(conn, rt.profile.market)
        return {"positions": {p.symbol: p for p in positions}, "state": state}

    async with anyio.create_task_group() as tg:
        tg.start_soon(fetch, "quote", lambda: rt.market_data.get_quote(intent.symbol))
        tg.start_soon(fetch, "account", rt.broker.get_account)
        tg.start_soon(fetch, "open", rt.broker.is_market_open)
        tg.start_soon(fetch, "book", book)
    quote = results["quote"]
    return RiskSnapshot(
        intent=intent,
        quote=quote,
        lot_size=rt.market_data.lot_size(intent.symbol) if quote is not None else None,
        account=results["account"],
        positions=results["book"]["positions"],
        market_open=results["open"],
        trading_state=results["book"]["state"],
        now=rt.clock.now(),
    )


def _checks_json(decision: RiskDecision) -> list[dict[str, Any]]:
    return [
        {"rule": c.rule, "passed": c.passed, "limit": c.limit, "actual": c.actual, "message": c.message}
        for c in decision.checks
    ]


async def check_risk(rt: Runtime, intent: OrderIntent, cycle_id: str | None, caller: Caller) -> RiskResult:
    snapshot = await take_snapshot(rt, intent)
    limits = rt.settings.risk
    decision = evaluate(snapshot, limits)
    now = rt.clock.now()
    approval_id = uuid.uuid4() if decision.approved else None
    expires_at = now + timedelta(seconds=limits.approval_ttl_seconds) if decision.approved else None
    arguments = {
        "symbol": intent.symbol,
        "side": intent.side.value,
        "quantity": plain(intent.quantity),
        "order_type": intent.order_type.value,
        **{
            k: plain(v)
            for k, v in (
                ("limit_price", intent.limit_price),
                ("stop_loss", intent.stop_loss),
                ("take_profit", intent.take_profit),
            )
            if v is not None
        },
    }
    outcome = f"approved {approval_id}" if approval_id else "refused: " + "; ".join(decision.reasons)
    async with rt.pool.acquire() as conn, conn.transaction():
        await repos.insert_risk_decision(
            conn,
            approval_id=approval_id,
            cycle_id=cycle_id,
            market=rt.profile.market,
            intent=intent,
            approved=decision.approved,
            checks=_checks_json(decision),
            limits_version=limits.version,
            created_at=now,
            expires_at=expires_at,
        )
        await audit(conn, caller, "check_risk", arguments, outcome, cycle_id)
    return RiskResult(intent, decision, approval_id, expires_at, limits.version)
