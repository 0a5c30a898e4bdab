"""Tool results as pydantic models: they become the tools' output schemas.

Money and quantities leave as plain decimal strings, timestamps as ISO-8601 UTC with offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import (
    BrokerMode,
    CycleMode,
    CycleState,
    Market,
    OrderRole,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
    TradingState,
)
from catalyst_mcp.domain.phases import Phase, PhaseStatus


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


Dec = Annotated[Decimal, PlainSerializer(plain, return_type=str)]
Utc = Annotated[datetime, PlainSerializer(_iso_utc, return_type=str)]


class Out(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class QuantityChange(Out):
    symbol: str
    from_: Dec = Field(alias="from")
    to: Dec


class PriceChange(Out):
    symbol: str
    from_: Dec = Field(alias="from")
    to: Dec


class SyncOut(Out):
    phantoms_closed: list[str]
    missing_added: list[str]
    quantity_updated: list[QuantityChange] = Field(
        description="quantities set to the broker's, signed (negative = short); side changes included"
    )
    changes_made: bool
    sync_id: int
    dry_run: bool
    refused: str | None
    details: list[str]
    sides_changed: list[str] = Field(default_factory=list, description="long in one, short in the other")
    prices_updated: list[PriceChange] = Field(default_factory=list, description="average prices set to the broker's")
    folded: list[str] = Field(default_factory=list, description="symbols under several rows or spellings")
    in_flight: list[str] = Field(default_factory=list, description="symbols with a working order: left for their fills")
    orders_refreshed: list[str] = Field(
        default_factory=list, description="client order ids whose new fills or status were recorded before comparing"
    )


class DirectiveOut(Out):
    directive_id: int
    text: str
    from_: str = Field(alias="from", description="who sent it: the supervisor's subject")
    sent_at: Utc


class StartCycleOut(Out):
    cycle_id: str | None
    market_open: bool
    trading_state: TradingState
    broker_mode: BrokerMode
    sync: SyncOut | None
    directives: list[DirectiveOut] = Field(description="the directives waiting for this agent, delivered once")


class AccountOut(Out):
    cash: Dec
    equity: Dec
    buying_power: Dec
    day_pnl: Dec
    currency: str


class PositionOut(Out):
    symbol: str
    side: PositionSide
    quantity: Dec
    avg_entry_price: Dec
    market_price: Dec | None
    market_value: Dec | None
    unrealized_pnl: Dec | None
    unrealized_pnl_pct: Dec | None
    stop_loss: Dec | None
    take_profit: Dec | None
    opened_at: Utc


class PortfolioOut(Out):
    account: AccountOut
    positions: list[PositionOut]


class CandidateOut(Out):
    symbol: str
    price: Dec = Field(description="the last price")
    change_pct: Dec = Field(description="percent from the previous close")
    gap_pct: Dec | None = Field(description="today's open, percent from the previous close; null without an open")
    volume: Dec = Field(description="today's volume so far, shares")
    relative_volume: Dec = Field(description="today's volume ÷ what a typical day has traded by this time")
    spread_pct: Dec | None = Field(description="(ask − bid) ÷ mid, percent; null without both sides")
    score: Dec = Field(description="change_pct + 0.5 × gap_pct + 0.5 × (relative volume up to 5 − 1), by default")


class ScanOut(Out):
    candidates: list[CandidateOut] = Field(description="those that met the tier's thresholds, best first")
    tier: str | None = Field(description="the tier used (e.g. strong, moderate, mild, any); null when none found any")
    tier_level: int | None = Field(description="the tier's place, 1 the strictest; null when none found any")
    tier_count: int = Field(description="how many tiers there are, tried strictest first")
    source: str = Field(description="where the data came from: simulated, alpaca-iex or alpaca-sip")
    considered: int = Field(description="symbols scanned")
    passed_filters: int = Field(description="symbols that passed the price, volume and spread filters")
    qualified: int = Field(description="symbols that met the tier's thresholds (candidates holds up to limit)")
    scan_id: int = Field(description="the stored scan")
    at: Utc
    summary: str = Field(description="one line: the tier used and the counts, or that no tier found anything")


class QuoteOut(Out):
    symbol: str
    bid: Dec | None
    ask: Dec | None
    last: Dec | None
    bid_size: Dec | None
    ask_size: Dec | None
    at: Utc | None
    lot_size: Dec | None = Field(
        default=None, description="the board lot: an order's quantity must be a whole number of lots (US: 1)"
    )
    reason: str | None = Field(description="why there is no quote (an unknown symbol), else null")


class MacdOut(Out):
    line: Dec
    signal: Dec
    histogram: Dec


class TechnicalsOut(Out):
    """Indicators as decimal strings, null where the bars are too few: the trend and momentum indicators over
    daily bars (the forming day last), vwap over today's five-minute bars and relative_volume of the last
    five-minute bar against the 20 before it."""

    symbol: str
    at: Utc
    last: Dec | None = Field(description="the last bar's close")
    rsi_14: Dec | None
    sma_10: Dec | None
    sma_20: Dec | None
    sma_50: Dec | None
    ema_9: Dec | None
    ema_21: Dec | None
    macd: MacdOut | None
    atr_14: Dec | None
    vwap: Dec | None
    relative_volume: Dec | None
    reason: str | None = Field(description="why there are no indicators (an unknown symbol), else null")


class CheckOut(Out):
    """One rule's outcome: rule (its name, a string), passed (a boolean), limit and actual (strings, or null),
    message (one line)."""

    # Published as its keys only (server/schemas.py): every check_risk answer carries one per rule.
    model_config = ConfigDict(json_schema_extra={"x-keys-only": True})

    rule: str
    passed: bool
    limit: str | None
    actual: str | None
    message: str


class IntentOut(Out):
    symbol: str
    side: Side
    quantity: Dec
    order_type: OrderType
    limit_price: Dec | None
    stop_loss: Dec | None
    take_profit: Dec | None


class RiskOut(Out):
    approved: bool
    approval_id: str | None
    expires_at: Utc | None
    intent: IntentOut
    checks: list[CheckOut]
    reasons: list[str]
    suggested_quantity: Dec | None
    limits_version: str


class ExecuteOut(Out):
    status: OrderStatus
    order_id: int | None
    client_order_id: str | None
    broker_order_id: str | None
    symbol: str
    side: Side
    quantity: Dec
    filled_quantity: Dec
    avg_fill_price: Dec | None
    position: PositionOut | None
    replayed: bool
    reason: str | None = Field(description="why the order was not sent or was rejected, else null")
    confirmation_token: str | None = Field(
        default=None,
        description="set when the order was not sent because it needs confirmation: once the user agrees, call"
        " execute_trade again with the same approval_id and confirmation set to this one-time token",
    )


class CloseOut(ExecuteOut):
    approval: RiskOut = Field(description="the check_risk result the exit ran (refused: no order was sent)")


class DecisionOut(Out):
    decision_id: int


def _absent(value: object) -> bool:
    return value is None


# A phase's times, duration and detail are left out until it has them: ten phases per cycle would otherwise
# repeat the same nulls in every answer.
_UNTIL_SET = Field(default=None, exclude_if=_absent)


class PhaseOut(Out):
    name: Phase
    status: PhaseStatus
    started_at: Utc | None = _UNTIL_SET
    completed_at: Utc | None = _UNTIL_SET
    duration_ms: int | None = _UNTIL_SET
    detail: str | None = _UNTIL_SET


class CycleStatusOut(Out):
    cycle_id: str
    agent_id: str
    market: Market
    mode: CycleMode
    status: CycleState
    current_phase: Phase | None
    started_at: Utc
    updated_at: Utc
    phases: list[PhaseOut] | None = Field(
        default=None,
        exclude_if=_absent,
        description="the ten phases in order, when one cycle or one agent is asked for; a listing of every agent "
        "leaves it out (current_phase and progress say where each cycle is)",
    )
    progress: str


class CycleOut(CycleStatusOut):
    """CycleStatus plus how many candidates the cycle went through and how it ended."""

    passes: int = Field(description="candidates analysed, decided and executed in turn")
    completed_at: Utc | None
    summary: str | None


class AgentOut(Out):
    agent_id: str
    market: Market
    last_seen_at: Utc
    last_tool: str | None
    cycle_id: str | None
    alive: bool = Field(description="seen within the abandonment window (CATALYST_ABANDON_AFTER_SECONDS)")
    idle_seconds: int


class MonitorExitOut(Out):
    symbol: str
    signal: str | None = Field(description="the exit rule that fired (stop_loss, trailing_stop, take_profit, ...)")
    strength: str
    reason: str
    action: str = Field(description="closed, refused (by the risk rules or the trading state) or failed")
    detail: str | None
    at: Utc


class MonitorOut(Out):
    holder: str = Field(description="host:pid of the monitor holding the market's lease")
    running: bool = Field(description="its lease has not ended")
    started_at: Utc
    last_pass_at: Utc | None
    positions_watched: int
    passes: int
    last_error: str | None
    exits: list[MonitorExitOut] = Field(description="the latest exits it acted on, newest first")


class StatusOut(Out):
    broker_mode: BrokerMode
    trading_state: TradingState
    cycles: list[CycleStatusOut]
    agents: list[AgentOut] = Field(description="each agent's heartbeat: every call it makes in a cycle")
    monitor: MonitorOut | None = Field(
        default=None, description="the position monitor (catalyst-mcp monitor) of this market, once one has run"
    )
    next_cursor: str | None = Field(
        default=None, description="pass as cursor for the next page of agents; null on the last page"
    )


class ListCyclesOut(Out):
    broker_mode: BrokerMode
    trading_state: TradingState
    cycles: list[CycleOut] = Field(description="newest first")
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page; null on the last")


class BookPositionOut(Out):
    symbol: str
    side: PositionSide
    quantity: Dec
    avg_entry_price: Dec
    stop_loss: Dec | None
    take_profit: Dec | None
    opened_at: Utc


class PositionsOut(Out):
    market: Market
    as_of: Utc
    positions: list[BookPositionOut]


class TradingStateOut(Out):
    market: Market
    state: TradingState
    reason: str | None
    changed_at: Utc
    changed_by: str


class FillOut(Out):
    fill_id: str
    side: Side
    quantity: Dec
    price: Dec
    at: Utc


class OrderOut(Out):
    order_id: int
    role: OrderRole = Field(
        description="entry or exit (an approved order), or stop_loss / take_profit (a protective leg of a position)"
    )
    parent_order_id: int | None = Field(description="for a protective leg: the order it was placed with, if any")
    client_order_id: str
    broker_order_id: str | None
    cycle_id: str | None
    symbol: str
    side: Side
    quantity: Dec
    order_type: OrderType
    limit_price: Dec | None
    stop_price: Dec | None = Field(description="a protective stop's trigger price")
    stop_loss: Dec | None
    take_profit: Dec | None
    status: OrderStatus
    filled_quantity: Dec
    avg_fill_price: Dec | None
    reason: str | None = Field(description="why it was rejected or cancelled, when known")
    created_at: Utc
    updated_at: Utc
    fills: list[FillOut]


class OrdersOut(Out):
    orders: list[OrderOut] = Field(description="newest first")
    truncated: bool = Field(description="true when more orders matched than were returned")


class CancelOut(Out):
    order: OrderOut
    cancelled: bool
    reason: str | None = Field(description="why it was not cancelled (it had filled or ended first), else null")


class HaltOut(Out):
    trading_state: TradingState
    cancelled_orders: list[str] = Field(description="client order ids of the working entries cancelled")
    changed_by: str
    changed_at: Utc


class ResumeOut(Out):
    trading_state: TradingState
    changed_by: str
    changed_at: Utc


class SentDirectiveOut(Out):
    directive_id: int
    agent_id: str
    expires_at: Utc


class AuditEventOut(Out):
    at: Utc
    kind: str = Field(description="call: one tool call; effect: a change, written in its transaction")
    subject: str | None
    role: str
    client: str
    client_version: str | None
    tool: str
    arguments: dict[str, Any] = Field(description="secrets redacted")
    outcome: str
    cycle_id: str | None
    duration_ms: int | None


class AuditOut(Out):
    events: list[AuditEventOut] = Field(description="newest first")


class HeartbeatOut(Out):
    agent_id: str
    at: Utc
    market_open: bool
    trading_state: TradingState
    broker_mode: BrokerMode
    directives: list[DirectiveOut]
