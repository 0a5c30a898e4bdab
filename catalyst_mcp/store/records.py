"""Records read back from the store that are not core value types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from catalyst_mcp.domain.enums import CycleMode, CycleState, Market, OrderStatus, OrderType, Side
from catalyst_mcp.domain.models import OrderIntent


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


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: int
    client_order_id: str
    approval_id: UUID
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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    caller: str
    role: str
    tool: str
    arguments: dict[str, Any]
    outcome: str
    cycle_id: str | None
