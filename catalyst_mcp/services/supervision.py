"""The supervisor's levers — halt and resume trading — and an agent's heartbeat. A halt runs on the market's
execution lane, so an order being executed is either sent before it or refused after it, never half."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from catalyst_mcp.domain.enums import BrokerMode, Market, TradingState
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.records import DirectiveRecord, TradingStateRecord
from catalyst_mcp.ports import Broker, Clock
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.directives import DirectiveService, check_agent_id
from catalyst_mcp.services.halting import Halting
from catalyst_mcp.store import cycles, trading_state
from catalyst_mcp.store.db import Database, transaction
from catalyst_mcp.store.lane import Lane

MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class HaltResult:
    state: TradingStateRecord
    cancelled: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Beat:
    agent_id: str
    at: datetime
    market_open: bool
    trading_state: TradingState
    broker_mode: BrokerMode
    directives: tuple[DirectiveRecord, ...]


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise InvalidInput("reason must not be empty")
    if len(text) > MAX_REASON:
        raise InvalidInput(f"reason is {len(text)} characters: at most {MAX_REASON}")
    return text


@dataclass(frozen=True, slots=True)
class SupervisionService:
    db: Database
    lane: Lane
    halting: Halting
    directives: DirectiveService
    broker: Broker
    clock: Clock
    market: Market

    async def halt(self, reason: str, cancel_open_orders: bool, caller: Caller) -> HaltResult:
        """HALTED for every process at once, on the lane; working entry orders cancelled unless told not."""
        why = _reason(reason)
        by = caller.subject or caller.name
        args = {"reason": why, "cancel_open_orders": cancel_open_orders}
        async with self.lane.hold() as conn:
            async with transaction(conn):
                changed = await trading_state.set_state(
                    conn, self.market, TradingState.HALTED, why, by, self.clock.now()
                )
                outcome = f"trading halted: {why}" if changed else "trading was already halted"
                await audit(conn, caller, "halt_trading", args, outcome, None)
            cancelled = await self.halting.cancel_entries(conn, caller, "halt_trading", cancel=cancel_open_orders)
            state = await trading_state.read(conn, self.market)
        return HaltResult(state, tuple(cancelled))

    async def resume(self, state: TradingState, reason: str, caller: Caller) -> TradingStateRecord:
        """ACTIVE or REDUCING, whatever halted trading (a supervisor's halt or the daily loss limit)."""
        if state is TradingState.HALTED:
            raise InvalidInput("resume_trading takes state active or reducing; halt with halt_trading")
        why = _reason(reason)
        by = caller.subject or caller.name
        async with self.lane.hold() as conn, transaction(conn):
            changed = await trading_state.set_state(conn, self.market, state, why, by, self.clock.now())
            outcome = f"trading {state.value}: {why}" if changed else f"trading was already {state.value}"
            await audit(conn, caller, "resume_trading", {"state": state.value, "reason": why}, outcome, None)
            return await trading_state.read(conn, self.market)

    async def heartbeat(self, agent_id: str) -> Beat:
        """The agent is alive: its heartbeat is recorded, and it hears the market, the trading state and the
        directives waiting for it."""
        check_agent_id(agent_id)
        now = self.clock.now()
        market_open = await self.broker.is_market_open()
        async with self.db.transaction() as conn:
            active = await cycles.active_cycle(conn, agent_id, self.market)
            await cycles.beat(conn, agent_id, self.market, now, "record_heartbeat", active.cycle_id if active else None)
            state = await trading_state.read(conn, self.market)
        delivered = await self.directives.deliver(agent_id, "record_heartbeat")
        return Beat(agent_id, now, market_open, state.state, self.broker.mode, tuple(delivered))
