"""Exits keep their protection. The protective legs of a position (its stop loss and take profit, working at
the broker) hold its shares there, so an exit first cancels them — and any working order that is not ours on
the exit side — and afterwards protects what is left with new legs at the same prices: a partial exit leaves
the remaining shares protected, never just unguarded. Runs on the execution lane."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from catalyst_mcp.domain.decimals import floor_to, plain
from catalyst_mcp.domain.enums import LegKind, Market, OrderRole, OrderStatus, PositionSide, Side
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, TemporaryFailure
from catalyst_mcp.domain.models import BrokerOrder
from catalyst_mcp.domain.records import OrderRecord
from catalyst_mcp.ports import Broker, Clock
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.booking import Booking
from catalyst_mcp.store import book, orders
from catalyst_mcp.store.db import Conn, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Levels:
    """The prices a position was protected at."""

    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None

    @property
    def any(self) -> bool:
        return self.stop_loss is not None or self.take_profit is not None


@dataclass(frozen=True, slots=True)
class Protection:
    market: Market
    clock: Clock
    broker: Broker
    lot_size: Callable[[str], Decimal]
    booking: Booking

    async def clear_for_exit(self, conn: Conn, exit_order: OrderRecord, caller: Caller, *, tool: str) -> Levels:
        """Cancel, at the broker, what holds the shares an exit needs: the position's protective legs and working
        orders on the exit side that are not ours. Our own approved orders stay: they are reservations the exit
        was judged against. Returns the prices of the legs cancelled (nothing to re-protect when none). When the
        broker cannot cancel one, the legs already cancelled are replaced and ``TemporaryFailure`` says that
        nothing was sent."""
        stop: Decimal | None = None
        target: Decimal | None = None
        try:
            working = [w for w in await self.broker.get_open_orders(exit_order.symbol) if w.side is exit_order.side]
            known = await orders.by_client_ids(conn, [w.client_order_id for w in working]) if working else {}
            for w in working:
                mine = known.get(w.client_order_id)
                if mine is not None and mine.role in (OrderRole.ENTRY, OrderRole.EXIT):
                    continue
                final = await self.broker.cancel_order(w.broker_order_id)
                if w.leg_kind is LegKind.STOP_LOSS:
                    stop = w.stop_price
                elif w.leg_kind is LegKind.TAKE_PROFIT or (mine is not None and mine.role is OrderRole.TAKE_PROFIT):
                    target = w.limit_price
                if mine is not None:
                    await self.booking.record_answer(conn, mine, final, caller, tool=tool)
                else:
                    async with transaction(conn):
                        await audit(
                            conn,
                            caller,
                            tool,
                            {"cancel": w.client_order_id},
                            f"working order {w.client_order_id} (not ours) {final.status.value} before the exit"
                            f" {exit_order.client_order_id}",
                            exit_order.cycle_id,
                        )
        except CatalystError as exc:
            cleared = Levels(stop, target)
            if cleared.any:
                await self.reprotect(conn, exit_order.symbol, cleared, caller, tool=tool, ignore=exit_order.order_id)
            raise TemporaryFailure(
                f"the orders holding the shares of {exit_order.symbol} could not be cancelled before the exit ({exc});"
                " nothing was sent: call execute_trade again with the same approval"
            ) from None
        return Levels(stop, target)

    async def refit_after_sync(self, conn: Conn, symbols: set[str], caller: Caller, *, tool: str) -> None:
        """A sync changed these symbols' positions outside any order of ours (gone, smaller, the other side): the
        protective legs working for them no longer fit. Cancel them and protect what the book now holds (nothing,
        for a position that is gone). A failure is logged and audited; the sync itself stands."""
        for symbol in sorted(symbols):
            legs = [o for o in await orders.working(conn, self.market, symbol=symbol) if o.role.is_leg]
            if not legs:
                continue
            stop: Decimal | None = None
            target: Decimal | None = None
            try:
                for leg in legs:
                    if leg.broker_order_id is None:
                        continue
                    final = await self.broker.cancel_order(leg.broker_order_id)
                    await self.booking.record_answer(conn, leg, final, caller, tool=tool)
                    if leg.role is OrderRole.STOP_LOSS:
                        stop = leg.stop_price
                    else:
                        target = leg.limit_price
            except CatalystError as exc:
                log.error("the protective legs of %s could not be refitted after a sync: %s", symbol, exc)
                async with transaction(conn):
                    await audit(conn, caller, tool, {"refit": symbol}, f"legs of {symbol} not refitted: {exc}", None)
                continue
            await self.reprotect(conn, symbol, Levels(stop, target), caller, tool=tool)

    async def protect_if_bare(self, conn: Conn, symbol: str, caller: Caller, *, tool: str) -> None:
        """Protect the position of ``symbol`` at its own levels when none of its protective legs works any
        more: an exit, or a leg, that never reached the broker may have left it bare."""
        if any(o.role.is_leg for o in await orders.working(conn, self.market, symbol=symbol)):
            return
        await self.reprotect(conn, symbol, Levels(), caller, tool=tool)

    async def reprotect(
        self,
        conn: Conn,
        symbol: str,
        levels: Levels,
        caller: Caller,
        *,
        tool: str,
        ignore: int | None = None,
    ) -> list[OrderRecord]:
        """Protect the shares of ``symbol`` not already in working exits of ours (but ``ignore``, one never sent)
        with new legs at ``levels`` (or the position's own levels). A refusal leaves the position unprotected and
        says so in the log and the audit."""
        position = await book.position_of(conn, self.market, symbol)
        if position is None:
            return []
        stop = levels.stop_loss if levels.any else position.stop_loss
        target = levels.take_profit if levels.any else position.take_profit
        if stop is None and target is None:
            return []
        exit_side = Side.SELL if position.side is PositionSide.LONG else Side.BUY
        exiting = sum(
            (
                o.quantity - o.filled_quantity
                for o in await orders.working(conn, self.market, symbol=symbol)
                if o.role is OrderRole.EXIT and o.side is exit_side and o.order_id != ignore
            ),
            Decimal(0),
        )
        quantity = floor_to(position.quantity - exiting, self.lot_size(symbol))
        if quantity <= 0:
            return []
        role = OrderRole.TAKE_PROFIT if target is not None else OrderRole.STOP_LOSS
        client_order_id = f"cat-p-{uuid.uuid4().hex}"
        now = self.clock.now()
        async with transaction(conn):
            await orders.upsert_leg(
                conn,
                market=self.market,
                broker=self.broker.name,
                symbol=symbol,
                side=exit_side,
                role=role,
                quantity=quantity,
                limit_price=target if role is OrderRole.TAKE_PROFIT else None,
                stop_price=stop if role is OrderRole.STOP_LOSS else None,
                client_order_id=client_order_id,
                broker_order_id=None,
                status=OrderStatus.PENDING,
                parent_order_id=None,
                cycle_id=None,
                at=now,
            )
        row = await orders.by_client_id(conn, client_order_id)
        assert row is not None
        what = f"{plain(quantity)} {symbol} (stop {_shown(stop)}, take profit {_shown(target)})"
        try:
            placed = await self.broker.protect(symbol, exit_side, quantity, stop, target, client_order_id)
        except BrokerRejected as exc:
            await self.booking.record_unsent(
                conn, row, OrderStatus.REJECTED, f"protection refused: {exc}", caller, tool=tool
            )
            log.error("could not protect %s: %s", what, exc)
            return []
        except CatalystError as exc:
            found = await self._lookup(client_order_id)
            if found is None:
                log.error("protection of %s not confirmed: %s", what, exc)
                async with transaction(conn):
                    await audit(conn, caller, tool, {"protect": client_order_id}, f"protection of {what} not confirmed:"
                                f" {exc}", None)  # fmt: skip
                return []
            placed = [found, *found.legs]
        first, rest = placed[0], tuple(placed[1:])
        recorded = await self.booking.record_answer(
            conn, row, replace(first, legs=rest or first.legs), caller, tool=tool
        )
        return [recorded]

    async def _lookup(self, client_order_id: str) -> BrokerOrder | None:
        try:
            return await self.broker.get_order_by_client_id(client_order_id)
        except CatalystError:
            return None


def _shown(price: Decimal | None) -> str:
    return "none" if price is None else plain(price)
