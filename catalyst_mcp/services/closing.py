"""Closing a position (close_position, and the position monitor): a market order on the other side, judged by
check_risk and sent by execute_trade — the same approval and serialised execution path as any order, so every
rule and the trading state apply. Reduce-only: never more than the position holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderType, PositionSide, Side
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.domain.records import CycleRecord
from catalyst_mcp.services.approval import ApprovalService, RiskResult
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.execution import ExecutionResult, ExecutionService
from catalyst_mcp.services.portfolio import PortfolioService


@dataclass(frozen=True, slots=True)
class CloseResult:
    """The exit judged (``risk``) and, when approved, executed (``execution``; None when refused)."""

    symbol: str
    side: Side
    quantity: Decimal
    risk: RiskResult
    execution: ExecutionResult | None

    @property
    def refusal(self) -> str | None:
        if self.risk.approval_id is None:
            return "refused by check_risk: " + "; ".join(self.risk.decision.reasons)
        return None


@dataclass(frozen=True, slots=True)
class ClosingService:
    portfolio: PortfolioService
    approvals: ApprovalService
    execution: ExecutionService

    def intent(self, symbol: str, side: PositionSide, held: Decimal, quantity: Decimal | None) -> OrderIntent:
        size = held if quantity is None else quantity
        if size > held:
            raise InvalidInput(f"the position in {symbol} is {plain(held)}: cannot close {plain(size)}")
        closing = Side.SELL if side is PositionSide.LONG else Side.BUY
        return OrderIntent(symbol=symbol, side=closing, quantity=size, order_type=OrderType.MARKET)

    async def judge(
        self, symbol: str, quantity: Decimal | None, cycle: CycleRecord | None, caller: Caller
    ) -> tuple[OrderIntent, RiskResult]:
        """check_risk for closing ``quantity`` (all when None) of the open position in ``symbol`` (canonical)."""
        held = next((p for p in await self.portfolio.book() if p.symbol == symbol), None)
        if held is None:
            raise InvalidInput(f"no open position in {symbol}")
        intent = self.intent(symbol, held.side, held.quantity, quantity)
        return intent, await self.approvals.check_risk(intent, cycle, caller)

    async def send(self, approval_id: uuid.UUID, cycle_id: str | None, caller: Caller) -> ExecutionResult:
        """execute_trade of an approved exit; again with the same approval after an answer that was not definite
        (a replay never sends a second order)."""
        return await self.execution.execute_trade(approval_id, cycle_id, caller)

    async def close(
        self, symbol: str, quantity: Decimal | None, cycle: CycleRecord | None, caller: Caller
    ) -> CloseResult:
        """Close ``quantity`` (all when None) of the open position in ``symbol`` (canonical)."""
        intent, risk = await self.judge(symbol, quantity, cycle, caller)
        if risk.approval_id is None:
            return CloseResult(symbol, intent.side, intent.quantity, risk, None)
        result = await self.send(risk.approval_id, cycle.cycle_id if cycle is not None else None, caller)
        return CloseResult(symbol, intent.side, intent.quantity, risk, result)
