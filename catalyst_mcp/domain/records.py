"""What the store reads back: one frozen read type per thing (a cycle, an agent's heartbeat, a logged decision,
the trading state, an approval, an order). The store builds them; services and transports use them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from catalyst_mcp.domain.enums import (
    CycleMode,
    CycleState,
    Market,
    OrderRole,
    OrderStatus,
    OrderType,
    Side,
    TradingState,
)
from catalyst_mcp.domain.models import Account, Fill, OrderIntent, Quote


@dataclass(frozen=True, slots=True)
class CycleRecord:
    cycle_id: str
    agent_id: str
    market: Market
    mode: CycleMode
    status: CycleState
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    summary: str | None


@dataclass(frozen=True, slots=True)
class ActiveCycle:
    """An agent's active cycle as the order path sees it."""

    cycle_id: str
    mode: CycleMode
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Heartbeat:
    agent_id: str
    market: Market
    last_seen_at: datetime
    last_tool: str | None
    cycle_id: str | None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    decision: str
    reasoning: str
    symbol: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TradingStateRecord:
    market: Market
    state: TradingState
    reason: str | None
    changed_at: datetime
    changed_by: str


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    approval_id: UUID
    cycle_id: str | None
    market: Market
    intent: OrderIntent
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    limits_version: str
    reference_price: Decimal | None = None
    role: OrderRole | None = None  # what check_risk judged it: an entry or an exit
    book_version: int | None = None  # the book's version when it was judged
    account: Account | None = None  # the broker's account it was judged against
    quote: Quote | None = None  # the quote it was judged against
    confirm_sha256: str | None = None  # the digest of the one-time token that confirms it, once one was issued


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One of our orders as recorded: an approved entry or exit, or a protective leg (no approval of its own),
    with its fills when they were asked for."""

    order_id: int
    client_order_id: str
    approval_id: UUID | None
    cycle_id: str | None
    market: Market
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    status: OrderStatus
    broker_order_id: str | None
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    reject_reason: str | None
    role: OrderRole = OrderRole.ENTRY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    parent_order_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    fills: tuple[Fill, ...] = ()


@dataclass(frozen=True, slots=True)
class DirectiveRecord:
    """A supervisor's instruction to an agent, delivered to it once."""

    directive_id: int
    agent_id: str
    text: str
    sent_by: str
    sent_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One row of the trail as ``list_audit`` shows it."""

    at: datetime
    kind: str  # "call": one tool call; "effect": a change, written with it
    subject: str | None
    role: str
    client: str
    client_version: str | None
    tool: str
    arguments: dict[str, Any]
    outcome: str
    cycle_id: str | None
    duration_ms: int | None
