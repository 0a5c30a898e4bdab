"""check_risk: evaluate an intent against the limits and record the decision (an approval if it passes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import TradingState
from catalyst_mcp.domain.models import Account, OrderIntent, Quote
from catalyst_mcp.risk.engine import RiskDecision, RiskSnapshot, evaluate
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import repos, risk_repo


@dataclass(frozen=True, slots=True)
class RiskResult:
    intent: OrderIntent
    decision: RiskDecision
    approval_id: uuid.UUID | None
    expires_at: datetime | None
    limits_version: str
    halted: str | None  # why trading was halted by this check (the daily loss limit), else None


def _minutes_to_close(rt: Runtime, market_now: datetime) -> Decimal | None:
    bounds = rt.profile.session_bounds(market_now.astimezone(rt.profile.timezone).date())
    if bounds is None or not bounds[0] <= market_now < bounds[1]:
        return None
    return Decimal((bounds[1] - market_now).total_seconds()) / 60


async def take_snapshot(rt: Runtime, intent: OrderIntent, *, approved_reference: Decimal | None = None) -> RiskSnapshot:
    """Read everything the rules need, concurrently, at one instant."""
    market = rt.profile.market
    wall = rt.clock.now()
    day_start_wall = wall.astimezone(rt.profile.timezone).replace(hour=0, minute=0, second=0, microsecond=0)
    quote: Quote | None = None
    account: Account | None = None
    is_open = False
    market_now = wall
    book: dict[str, Any] = {}

    async def read_quote() -> None:
        nonlocal quote
        quote = await rt.market_data.get_quote(intent.symbol)

    async def read_account() -> None:
        nonlocal account
        account = await rt.broker.get_account()

    async def read_clock() -> None:
        nonlocal is_open, market_now
        is_open = await rt.broker.is_market_open()
        market_now = await rt.broker.now()

    async def read_book() -> None:
        async with rt.pool.acquire() as conn:
            book["positions"] = {p.symbol: p for p in await repos.open_positions(conn, market)}
            book["state"] = await repos.trading_state(conn, market)
            book["open_orders"] = tuple(await risk_repo.open_orders(conn, market))
            book["recent"] = tuple(await risk_repo.orders_since(conn, market, day_start_wall))
            book["sync_ok"] = await risk_repo.last_sync_ok(conn, market)

    async with anyio.create_task_group() as tg:
        for read in (read_quote, read_account, read_clock, read_book):
            tg.start_soon(read)
    assert account is not None
    trading_day = market_now.astimezone(rt.profile.timezone).date()
    async with rt.pool.acquire() as conn:
        marked = await risk_repo.start_of_day_equity(conn, market, trading_day, account.equity, wall)
    start_equity = account.last_equity if account.last_equity is not None else marked
    return RiskSnapshot(
        intent=intent,
        quote=quote,
        lot_size=rt.market_data.lot_size(intent.symbol) if quote is not None else None,
        account=account,
        positions=book["positions"],
        market_open=is_open,
        trading_state=book["state"],
        now=wall,
        minutes_to_close=_minutes_to_close(rt, market_now),
        open_orders=book["open_orders"],
        start_of_day_equity=start_equity,
        last_sync_ok=book["sync_ok"],
        recent_orders=book["recent"],
        market_now=market_now,
        approved_reference=approved_reference,
    )


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


async def check_risk(rt: Runtime, intent: OrderIntent, cycle_id: str | None, caller: Caller) -> RiskResult:
    snapshot = await take_snapshot(rt, intent)
    limits = rt.settings.risk
    decision = evaluate(snapshot, limits)
    now = rt.clock.now()
    approval_id = uuid.uuid4() if decision.approved else None
    expires_at = now + timedelta(seconds=limits.approval_ttl_seconds) if decision.approved else None
    outcome = f"approved {approval_id}" if approval_id else "refused: " + "; ".join(decision.reasons)
    halted = None
    async with rt.pool.acquire() as conn, conn.transaction():
        await repos.commit_without_flush(conn)
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
            reference_price=snapshot.reference_price,
        )
        await audit(conn, caller, "check_risk", intent_arguments(intent), outcome, cycle_id)
        if "daily_loss" in decision.failed_rules:
            reason = next(c.message for c in decision.checks if c.rule == "daily_loss")
            if await risk_repo.set_trading_state(conn, rt.profile.market, TradingState.HALTED, reason, "risk", now):
                halted = reason
                await audit(conn, caller, "check_risk", {}, f"trading halted: {reason}", cycle_id)
    return RiskResult(intent, decision, approval_id, expires_at, limits.version, halted)
