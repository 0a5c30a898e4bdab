"""The position monitor (``catalyst-mcp monitor``): every open position checked every interval during the
market's sessions — its water marks moved, its exit signal evaluated (``signals/exits.py``), the check
recorded — and a position whose signal reaches the configured strength closed through ``ClosingService``, the
path of ``close_position``: check_risk then execute_trade on the market's execution lane, so every risk rule
and the trading state apply to the monitor as to any client.

One monitor watches a market: it holds the market's lease in PostgreSQL, renewed at every pass and while it
waits; another monitor waits for the lease to end. ``MonitorLoop`` is the long-running part: it sleeps
through closed hours, and after a failure (broker, database) backs off, doubling up to a bound, and tries
again. Its waits go through an injected ``wait`` so tests drive it on a controllable clock."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final
from uuid import UUID

import anyio

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market, OrderStatus
from catalyst_mcp.domain.errors import CatalystError, TemporaryFailure
from catalyst_mcp.domain.models import Position, Quote
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.closing import ClosingService
from catalyst_mcp.services.execution import ExecutionResult
from catalyst_mcp.services.portfolio import PortfolioService
from catalyst_mcp.services.technicals import TechnicalsService
from catalyst_mcp.signals.exits import ExitSignal, ExitThresholds, Strength, evaluate_exit
from catalyst_mcp.signals.watch import next_pass, session_facts
from catalyst_mcp.store import monitor as store
from catalyst_mcp.store.db import Database
from catalyst_mcp.store.monitor import Check, Lease

log = logging.getLogger(__name__)

TOOL: Final = "monitor"
_NO_CLOSE: Final = datetime.max.replace(tzinfo=UTC)  # a day without a session has no end-of-session signal
_FILLED: Final = frozenset({OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED})


@dataclass(frozen=True, slots=True)
class MonitorPolicy:
    """When and how the monitor acts (from ``MonitorSettings`` and the market's default thresholds)."""

    interval: timedelta
    exit_strength: Strength
    thresholds: ExitThresholds
    lease: timedelta
    max_backoff: timedelta


@dataclass(frozen=True, slots=True)
class PassReport:
    at: datetime
    checks: tuple[Check, ...]

    @property
    def acted(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.action != "watched")

    def summary(self) -> str:
        if not self.checks:
            return "no open positions"
        acted = self.acted
        told = "; ".join(f"{c.symbol} {c.action}: {c.reason}" + (f" ({c.detail})" if c.detail else "") for c in acted)
        return f"{len(self.checks)} position(s) watched" + (f"; {told}" if told else ", no exit")


def holder_name() -> str:
    """This process's name on the lease: host, pid and a random part (a restarted pid is another holder)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class MonitorService:
    db: Database
    clock: Clock  # wall time: the lease and the records
    broker: Broker  # market time (the simulated exchange has its own clock)
    market_data: MarketData
    portfolio: PortfolioService
    technicals: TechnicalsService
    closing: ClosingService
    profile: MarketProfile
    policy: MonitorPolicy
    caller: Caller

    @property
    def market(self) -> Market:
        return self.profile.market

    async def take_lease(self, holder: str) -> Lease:
        now = self.clock.now()
        async with self.db.connection() as conn:
            return await store.take_lease(conn, self.market, holder, now, now + self.policy.lease)

    async def release_lease(self, holder: str) -> None:
        async with self.db.connection() as conn:
            await store.release_lease(conn, self.market, holder, self.clock.now())

    async def record_failure(self, holder: str, error: str) -> None:
        async with self.db.connection() as conn:
            await store.record_pass(conn, self.market, holder, self.clock.now(), 0, error[:500])

    async def run_pass(self, holder: str) -> PassReport:
        """Check every open position once; close those whose signal reaches the policy's strength."""
        at = await self.broker.now()
        positions = await self.portfolio.book()
        quotes = await self.market_data.get_quotes(sorted({p.symbol for p in positions})) if positions else {}
        priced = [(p.position_id, p.symbol, quotes[p.symbol].last) for p in positions if _priced(quotes, p)]
        async with self.db.transaction() as conn:
            marks = await store.advance_marks(conn, self.market, priced, self.clock.now())
        facts = session_facts(self.profile, at)
        checks: list[Check] = []
        for position in positions:
            quote = quotes.get(position.symbol)
            mark = marks.get(position.position_id)
            if quote is None or mark is None or not _priced(quotes, position):
                checks.append(_check(position, at, None, None, None, "no quote", "failed"))
                continue
            reading = await self.technicals.technicals(position.symbol, at)
            signal = evaluate_exit(
                position.side,
                position.quantity,
                position.avg_entry_price,
                quote.last,
                mark.high_water,
                mark.low_water,
                position.opened_at,  # in the broker's time, as ``at`` (fills are booked at the broker's clock)
                at,
                reading.daily if reading.known else None,
                facts.close or _NO_CLOSE,
                facts.lunch_start,
                self.policy.thresholds,
                position.stop_loss,
                position.take_profit,
            )
            action, detail = "watched", None
            # An exit sent without a definite answer is settled first, whatever the signal says now.
            strong = signal.strength is not Strength.NONE and signal.strength >= self.policy.exit_strength
            if strong or mark.pending_approval is not None:
                action, detail = await self._close(position, signal, mark.pending_approval)
            checks.append(
                Check(
                    position_id=position.position_id,
                    symbol=position.symbol,
                    at=at,
                    last_price=quote.last,
                    high_water=mark.high_water,
                    low_water=mark.low_water,
                    strength=signal.strength.value,
                    rule=signal.rule.value if signal.rule is not None else None,
                    reason=signal.reason,
                    action=action,
                    detail=detail,
                )
            )
        async with self.db.transaction() as conn:
            await store.insert_checks(conn, self.market, checks)
            await store.record_pass(conn, self.market, holder, self.clock.now(), len(positions), None)
        return PassReport(at, tuple(checks))

    async def _close(self, position: Position, signal: ExitSignal, pending: UUID | None) -> tuple[str, str]:
        """Close the position for ``signal``: (action, what happened), the reason audited. An exit sent before
        without a definite answer (``pending``) is sent again with its own approval, never a new one."""
        reason = f"monitor: {signal.reason}"
        action, detail = "failed", "not sent"
        try:
            approval_id = pending
            if approval_id is None:
                _, risk = await self.closing.judge(position.symbol, None, None, self.caller)
                if risk.approval_id is None:
                    action, detail = "refused", "refused by check_risk: " + "; ".join(risk.decision.reasons)
                else:
                    approval_id = risk.approval_id
                    await self._pending(position, approval_id)
            if approval_id is not None:
                result = await self.closing.send(approval_id, None, self.caller)
                await self._pending(position, None)
                action, detail = _outcome(result)
        except TemporaryFailure as exc:  # not answered for good: the approval stays pending for the next pass
            action, detail = "failed", str(exc)
        except CatalystError as exc:
            await self._pending(position, None)
            action, detail = "failed", str(exc)
        arguments = {"symbol": position.symbol, "reason": reason, "strength": signal.strength.value}
        async with self.db.transaction() as conn:
            await audit(conn, self.caller, TOOL, arguments, f"{action}: {detail}", None)
        return action, detail

    async def _pending(self, position: Position, approval_id: UUID | None) -> None:
        async with self.db.connection() as conn:
            await store.set_pending(conn, self.market, position.position_id, approval_id)


def _outcome(result: ExecutionResult) -> tuple[str, str]:
    order = result.order
    if order is not None and order.status in _FILLED:
        avg = plain(order.avg_fill_price) if order.avg_fill_price is not None else "?"
        return "closed", f"{order.side.value} {plain(order.filled_quantity)} @ {avg}, order {order.order_id}"
    if order is not None and order.status is not OrderStatus.REJECTED:
        return "closed", f"order {order.order_id} {order.status.value}"
    return "refused", result.reason or (order.reject_reason if order is not None else None) or "not sent"


def _priced(quotes: dict[str, Quote], position: Position) -> bool:
    quote = quotes.get(position.symbol)
    return quote is not None and quote.last > 0


def _check(
    position: Position,
    at: datetime,
    last: Decimal | None,
    high: Decimal | None,
    low: Decimal | None,
    reason: str,
    action: str,
) -> Check:
    return Check(position.position_id, position.symbol, at, last, high, low, Strength.NONE.value, None, reason, action)


Wait = Callable[[float], Awaitable[None]]
Say = Callable[[str], None]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_BUSY: Final = 3  # --once while another monitor holds the lease


@dataclass
class MonitorLoop:
    """The long-running monitor of one market. ``wait(seconds)`` sleeps (returns early when ``stop`` is
    set); ``say`` prints one line of progress."""

    service: MonitorService
    wait: Wait
    say: Say
    stop: anyio.Event
    holder: str = ""

    def __post_init__(self) -> None:
        if not self.holder:
            self.holder = holder_name()

    async def once(self) -> int:
        """One pass now, whatever the hours (``--once``): 0 done, 1 failed, 3 another monitor holds the lease."""
        svc = self.service
        try:
            lease = await svc.take_lease(self.holder)
            if not lease.mine:
                self.say(f"another monitor ({lease.holder}) watches {svc.market} until {_hhmm(lease.until)}: no pass")
                return EXIT_BUSY
            try:
                report = await svc.run_pass(self.holder)
            finally:
                await svc.release_lease(self.holder)
        except CatalystError as exc:
            self.say(f"monitor pass failed: {exc}")
            return EXIT_FAILED
        self.say(f"{svc.market} monitor pass: {report.summary()}")
        return EXIT_OK

    async def run(self) -> int:
        """Pass after pass until ``stop`` is set; returns 0. Failures back off and are retried."""
        svc, policy = self.service, self.service.policy
        due: datetime | None = None
        failures = 0
        waiting_for: str | None = None
        closed_until: datetime | None = None
        try:
            while not self.stop.is_set():
                delay: float
                try:
                    lease = await svc.take_lease(self.holder)
                    if not lease.mine:
                        if waiting_for != lease.holder:
                            self.say(f"another monitor ({lease.holder}) watches {svc.market}: waiting for its lease")
                            waiting_for = lease.holder
                        remaining = (lease.until - svc.clock.now()).total_seconds()
                        await self.wait(min(max(remaining, 1.0), policy.lease.total_seconds()))
                        continue
                    if waiting_for is not None:
                        self.say(f"took the {svc.market} lease")
                        waiting_for = None
                    now = await svc.broker.now()
                    if due is None or now >= due:
                        if svc.profile.is_open(now):
                            report = await svc.run_pass(self.holder)
                            self.say(f"{svc.market} monitor pass: {report.summary()}")
                            closed_until = None
                        due = next_pass(svc.profile, now, policy.interval)
                        if due - now > policy.interval and closed_until != due:
                            self.say(f"{svc.market} closed: next pass at the open, {due.isoformat()}")
                            closed_until = due
                    failures = 0
                    # Wake for the pass, or sooner to renew the lease while the market sleeps.
                    delay = min((due - now).total_seconds(), policy.lease.total_seconds() / 3)
                except Exception as exc:  # the loop's boundary: a monitor survives what one pass meets
                    failures += 1
                    delay = min(
                        policy.interval.total_seconds() * 2 ** (failures - 1), policy.max_backoff.total_seconds()
                    )
                    message = str(exc) if isinstance(exc, CatalystError) else f"{type(exc).__name__}: {exc}"
                    if not isinstance(exc, CatalystError):
                        log.exception("monitor pass failed unexpectedly")
                    self.say(f"monitor pass failed ({failures} in a row): {message}; again in {delay:g} s")
                    await _quietly(svc.record_failure(self.holder, message))
                await self.wait(max(delay, 0.0))
        finally:
            with anyio.CancelScope(shield=True):
                await _quietly(svc.release_lease(self.holder))
        return EXIT_OK


async def _quietly(work: Awaitable[None]) -> None:
    """Best effort: the database may be the thing that failed."""
    try:
        with anyio.fail_after(5):
            await work
    except Exception as exc:  # best effort by design; the next pass reports what is wrong
        log.debug("monitor bookkeeping skipped: %s", exc)


def _hhmm(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S UTC")
