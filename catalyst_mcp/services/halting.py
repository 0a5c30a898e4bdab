"""Halting: when trading halts, working entry orders are cancelled at the broker (``halt_cancels_entries``, on
by default), so nothing placed before a halt can add exposure after it. Runs on the execution lane; a cancel
the broker does not confirm is tried again by the next holder of the lane that finds trading halted."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from catalyst_mcp.domain.enums import Market, OrderRole, OrderStatus, TradingState
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.ports import Broker, Clock
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.booking import Booking
from catalyst_mcp.store import orders, trading_state
from catalyst_mcp.store.db import Conn, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Halting:
    market: Market
    clock: Clock
    broker: Broker
    booking: Booking
    cancels_entries: bool

    async def halt(self, conn: Conn, reason: str, by: str, caller: Caller, tool: str) -> bool:
        """Switch the market to HALTED (False when it already was) and cancel its working entries."""
        async with transaction(conn):
            changed = await trading_state.set_state(
                conn, self.market, TradingState.HALTED, reason, by, self.clock.now()
            )
            if changed:
                await audit(conn, caller, tool, {}, f"trading halted: {reason}", None)
        await self.cancel_entries(conn, caller, tool)
        return changed

    async def cancel_entries(self, conn: Conn, caller: Caller, tool: str, *, cancel: bool | None = None) -> list[str]:
        """Cancel every working entry order of the market (unless ``cancel``, or else the setting, says not
        to); returns their client order ids."""
        if not (self.cancels_entries if cancel is None else cancel):
            return []
        done: list[str] = []
        for order in await orders.working(conn, self.market):
            if order.role is not OrderRole.ENTRY:
                continue
            try:
                at_broker = (
                    await self.broker.get_order_by_client_id(order.client_order_id)
                    if order.broker_order_id is None
                    else None
                )
                if order.broker_order_id is None and at_broker is None:
                    async with transaction(conn):
                        if await orders.cancel_unsent(conn, order.order_id, "trading halted", self.clock.now()):
                            await audit(conn, caller, tool, {"cancel": order.client_order_id},
                                        f"order {order.client_order_id} cancelled before it reached the broker:"
                                        " trading halted", order.cycle_id)  # fmt: skip
                    done.append(order.client_order_id)
                    continue
                broker_id = order.broker_order_id or (at_broker.broker_order_id if at_broker else "")
                final = await self.broker.cancel_order(broker_id)
            except CatalystError as exc:
                log.warning("halt: could not cancel %s yet: %s", order.client_order_id, exc)
                continue
            recorded = await self.booking.record_answer(conn, order, final, caller, tool=tool)
            if recorded.status is OrderStatus.CANCELLED:
                done.append(order.client_order_id)
        return done
