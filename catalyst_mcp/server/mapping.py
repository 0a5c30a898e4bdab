"""From service results to tool result models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pydantic_core
from mcp_types import CallToolResult, TextContent

from catalyst_mcp.domain.enums import BrokerMode, Market, OrderStatus
from catalyst_mcp.domain.models import Position, Quote
from catalyst_mcp.domain.records import AuditEvent, DirectiveRecord, OrderRecord, TradingStateRecord
from catalyst_mcp.reconcile.plan import ChangeKind
from catalyst_mcp.server import models as m
from catalyst_mcp.services.approval import RiskResult
from catalyst_mcp.services.cycles import StartResult
from catalyst_mcp.services.execution import ExecutionResult
from catalyst_mcp.services.monitor_view import MonitorView
from catalyst_mcp.services.portfolio import MarkedPosition, Portfolio, Protection, ScanReport, mark
from catalyst_mcp.services.sync import SyncResult
from catalyst_mcp.services.technicals import TechnicalsReading
from catalyst_mcp.services.workflow import AgentView, CycleView, StatusView
from catalyst_mcp.signals.scanner import ScanCandidate


def sync_out(result: SyncResult) -> m.SyncOut:
    """A dry run lists what it would change; a refused run lists nothing (its plan is in details)."""
    plan = result.plan.without_changes() if result.refused else result.plan
    return m.SyncOut(
        phantoms_closed=[c.symbol for c in plan.of(ChangeKind.PHANTOM)],
        missing_added=[c.symbol for c in plan.of(ChangeKind.MISSING)],
        quantity_updated=[
            m.QuantityChange(symbol=c.symbol, from_=c.book_quantity, to=c.broker_quantity)
            for c in plan.changes
            if c.kind in (ChangeKind.QUANTITY, ChangeKind.SIDE)
        ],
        changes_made=result.changes_made,
        sync_id=result.sync_id,
        dry_run=result.dry_run,
        refused=result.refused,
        details=list(result.details),
        sides_changed=[c.symbol for c in plan.of(ChangeKind.SIDE)],
        prices_updated=[
            m.PriceChange(symbol=c.symbol, from_=c.book_avg_price, to=c.broker_avg_price)
            for c in plan.of(ChangeKind.PRICE)
            if c.book_avg_price is not None and c.broker_avg_price is not None
        ],
        folded=sorted({f.symbol for f in plan.folds}),
        in_flight=[s.symbol for s in plan.skipped],
        orders_refreshed=list(result.orders_refreshed),
    )


def start_out(result: StartResult, broker_mode: BrokerMode) -> m.StartCycleOut:
    return m.StartCycleOut(
        cycle_id=result.cycle_id,
        market_open=result.market_open,
        trading_state=result.trading_state,
        broker_mode=broker_mode,
        sync=None if result.sync is None else sync_out(result.sync),
        directives=[directive_out(d) for d in result.directives],
    )


def directive_out(d: DirectiveRecord) -> m.DirectiveOut:
    return m.DirectiveOut(directive_id=d.directive_id, text=d.text, from_=d.sent_by, sent_at=d.sent_at)


def position_out(marked: MarkedPosition) -> m.PositionOut:
    p = marked.position
    return m.PositionOut(
        symbol=p.symbol,
        side=p.side,
        quantity=p.quantity,
        avg_entry_price=p.avg_entry_price,
        market_price=marked.market_price,
        market_value=marked.market_value,
        unrealized_pnl=marked.unrealized_pnl,
        unrealized_pnl_pct=marked.unrealized_pnl_pct,
        stop_loss=marked.stop_loss,
        take_profit=marked.take_profit,
        opened_at=p.opened_at,
    )


def portfolio_out(portfolio: Portfolio) -> m.PortfolioOut:
    a = portfolio.account
    return m.PortfolioOut(
        account=m.AccountOut(
            cash=a.cash,
            equity=a.equity,
            buying_power=a.buying_power,
            day_pnl=portfolio.day_pnl,
            currency=a.currency,
        ),
        positions=[position_out(p) for p in portfolio.positions],
    )


def candidate_out(c: ScanCandidate) -> m.CandidateOut:
    return m.CandidateOut(
        symbol=c.symbol,
        price=c.price,
        change_pct=c.change_pct,
        gap_pct=c.gap_pct,
        volume=c.volume,
        relative_volume=c.relative_volume,
        spread_pct=c.spread_pct,
        score=c.score,
    )


def scan_out(report: ScanReport) -> m.ScanOut:
    r = report.result
    return m.ScanOut(
        candidates=[candidate_out(c) for c in r.candidates],
        tier=r.tier.name if r.tier is not None else None,
        tier_level=r.level,
        tier_count=r.tier_count,
        source=report.source,
        considered=r.considered,
        passed_filters=r.passed_filters,
        qualified=r.qualified,
        scan_id=report.scan_id,
        at=report.at,
        summary=r.describe(),
    )


def technicals_out(reading: TechnicalsReading) -> m.TechnicalsOut:
    daily, intraday = reading.daily, reading.intraday
    macd = None
    if daily.macd is not None and daily.macd_signal is not None and daily.macd_histogram is not None:
        macd = m.MacdOut(line=daily.macd, signal=daily.macd_signal, histogram=daily.macd_histogram)
    return m.TechnicalsOut(
        symbol=reading.symbol,
        at=reading.at,
        last=intraday.last_close if intraday.last_close is not None else daily.last_close,
        rsi_14=daily.rsi_14,
        sma_10=daily.sma_10,
        sma_20=daily.sma_20,
        sma_50=daily.sma_50,
        ema_9=daily.ema_9,
        ema_21=daily.ema_21,
        macd=macd,
        atr_14=daily.atr_14,
        vwap=intraday.vwap,
        relative_volume=intraday.relative_volume,
        reason=None if reading.known else f"{reading.symbol} is not a known symbol in this market",
    )


def quote_out(symbol: str, quote: Quote | None, lot_size: Decimal | None = None) -> m.QuoteOut:
    if quote is None:
        return m.QuoteOut(
            symbol=symbol,
            bid=None,
            ask=None,
            last=None,
            bid_size=None,
            ask_size=None,
            at=None,
            reason=f"{symbol} is not a known symbol in this market",
        )
    return m.QuoteOut(
        symbol=quote.symbol,
        bid=quote.bid,
        ask=quote.ask,
        last=quote.last,
        bid_size=quote.bid_size,
        ask_size=quote.ask_size,
        at=quote.at,
        lot_size=lot_size,
        reason=None,
    )


def risk_out(result: RiskResult) -> m.RiskOut:
    i, d = result.intent, result.decision
    return m.RiskOut(
        approved=d.approved,
        approval_id=None if result.approval_id is None else str(result.approval_id),
        expires_at=result.expires_at,
        intent=m.IntentOut(
            symbol=i.symbol,
            side=i.side,
            quantity=i.quantity,
            order_type=i.order_type,
            limit_price=i.limit_price,
            stop_loss=i.stop_loss,
            take_profit=i.take_profit,
        ),
        checks=[
            m.CheckOut(rule=c.rule, passed=c.passed, limit=c.limit, actual=c.actual, message=c.message)
            for c in d.checks
        ],
        reasons=list(d.reasons),
        suggested_quantity=d.suggested_quantity,
        limits_version=result.limits_version,
    )


def execute_out(
    result: ExecutionResult, position: Position | None, quote: Quote | None, protection: Protection = (None, None)
) -> m.ExecuteOut:
    intent, order = result.approval.intent, result.order
    if order is None:
        return m.ExecuteOut(
            status=OrderStatus.REJECTED,
            order_id=None,
            client_order_id=None,
            broker_order_id=None,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            filled_quantity=0,
            avg_fill_price=None,
            position=None,
            replayed=False,
            reason=result.reason,
            confirmation_token=result.confirmation_token,
        )
    return m.ExecuteOut(
        status=order.status,
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        broker_order_id=order.broker_order_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        avg_fill_price=order.avg_fill_price,
        position=None if position is None else position_out(mark(position, quote, protection)),
        replayed=result.replayed,
        reason=order.reject_reason,
    )


def cycle_status_out(view: CycleView, *, phases: bool = True) -> m.CycleStatusOut:
    """A cycle's status; without ``phases`` its phase list is left out (current_phase and progress remain)."""
    return m.CycleStatusOut(
        cycle_id=view.cycle_id,
        agent_id=view.agent_id,
        market=view.market,
        mode=view.mode,
        status=view.status,
        current_phase=view.current_phase,
        started_at=view.started_at,
        updated_at=view.updated_at,
        phases=[
            m.PhaseOut(
                name=p.name,
                status=p.status,
                started_at=p.started_at,
                completed_at=p.completed_at,
                duration_ms=p.duration_ms,
                detail=p.detail,
            )
            for p in view.phases
        ]
        if phases
        else None,
        progress=view.progress,
    )


def cycle_out(view: CycleView) -> m.CycleOut:
    return m.CycleOut(
        **dict(cycle_status_out(view)),
        passes=view.passes,
        completed_at=view.completed_at,
        summary=view.summary,
    )


def agent_out(view: AgentView) -> m.AgentOut:
    return m.AgentOut(
        agent_id=view.agent_id,
        market=view.market,
        last_seen_at=view.last_seen_at,
        last_tool=view.last_tool,
        cycle_id=view.cycle_id,
        alive=view.alive,
        idle_seconds=view.idle_seconds,
    )


def status_out(view: StatusView, *, phases: bool = True) -> m.StatusOut:
    """workflow_status's answer; without ``phases`` (a listing of every agent) the cycles' phase lists are left
    out, so the answer grows by a few hundred bytes per agent."""
    return m.StatusOut(
        broker_mode=view.broker_mode,
        trading_state=view.trading_state,
        cycles=[cycle_status_out(c, phases=phases) for c in view.cycles],
        agents=[agent_out(a) for a in view.agents],
        monitor=monitor_out(view.monitor) if view.monitor is not None else None,
        next_cursor=view.next_cursor,
    )


def monitor_out(v: MonitorView) -> m.MonitorOut:
    return m.MonitorOut(
        holder=v.holder,
        running=v.running,
        started_at=v.started_at,
        last_pass_at=v.last_pass_at,
        positions_watched=v.positions_watched,
        passes=v.passes,
        last_error=v.last_error,
        exits=[
            m.MonitorExitOut(
                symbol=c.symbol,
                signal=c.rule,
                strength=c.strength,
                reason=c.reason,
                action=c.action,
                detail=c.detail,
                at=c.at,
            )
            for c in v.exits
        ],
    )


def list_cycles_out(view: StatusView) -> m.ListCyclesOut:
    return m.ListCyclesOut(
        broker_mode=view.broker_mode,
        trading_state=view.trading_state,
        cycles=[cycle_out(c) for c in view.cycles],
        next_cursor=view.next_cursor,
    )


def order_out(o: OrderRecord) -> m.OrderOut:
    assert o.created_at is not None and o.updated_at is not None
    return m.OrderOut(
        order_id=o.order_id,
        role=o.role,
        parent_order_id=o.parent_order_id,
        client_order_id=o.client_order_id,
        broker_order_id=o.broker_order_id,
        cycle_id=o.cycle_id,
        symbol=o.symbol,
        side=o.side,
        quantity=o.quantity,
        order_type=o.order_type,
        limit_price=o.limit_price,
        stop_price=o.stop_price,
        stop_loss=o.stop_loss,
        take_profit=o.take_profit,
        status=o.status,
        filled_quantity=o.filled_quantity,
        avg_fill_price=o.avg_fill_price,
        reason=o.reject_reason,
        created_at=o.created_at,
        updated_at=o.updated_at,
        fills=[m.FillOut(fill_id=f.fill_id, side=f.side, quantity=f.quantity, price=f.price, at=f.at) for f in o.fills],
    )


def positions_out(market: Market, as_of: datetime, book: list[Position]) -> m.PositionsOut:
    return m.PositionsOut(
        market=market,
        as_of=as_of,
        positions=[
            m.BookPositionOut(
                symbol=p.symbol,
                side=p.side,
                quantity=p.quantity,
                avg_entry_price=p.avg_entry_price,
                stop_loss=p.stop_loss,
                take_profit=p.take_profit,
                opened_at=p.opened_at,
            )
            for p in book
        ],
    )


def trading_state_out(state: TradingStateRecord) -> m.TradingStateOut:
    return m.TradingStateOut(
        market=state.market,
        state=state.state,
        reason=state.reason,
        changed_at=state.changed_at,
        changed_by=state.changed_by,
    )


def tool_result(out: m.Out) -> CallToolResult:
    """The finished tool result: structured content and the same JSON as compact text (the SDK's own text of a
    returned model is indented: a third larger for the same answer)."""
    structured = out.model_dump(mode="json")
    text = pydantic_core.to_json(structured).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def audit_event_out(e: AuditEvent) -> m.AuditEventOut:
    return m.AuditEventOut(
        at=e.at,
        kind=e.kind,
        subject=e.subject,
        role=e.role,
        client=e.client,
        client_version=e.client_version,
        tool=e.tool,
        arguments=e.arguments,
        outcome=e.outcome,
        cycle_id=e.cycle_id,
        duration_ms=e.duration_ms,
    )
