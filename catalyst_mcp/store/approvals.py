"""Risk decisions and the approvals among them. Written on the execution lane's connection: an approval is a
reservation from the moment it is recorded until it is used or expires."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from catalyst_mcp.domain.enums import Market, OrderRole, OrderType, Side
from catalyst_mcp.domain.models import Account, OrderIntent, Quote
from catalyst_mcp.domain.records import ApprovalRecord
from catalyst_mcp.store import audit
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn

TABLES = ("risk_decisions",)


async def record_decision(
    conn: Conn,
    *,
    approval_id: UUID | None,
    cycle_id: str | None,
    market: Market,
    intent: OrderIntent,
    approved: bool,
    role: OrderRole,
    checks: list[dict[str, Any]],
    limits_version: str,
    created_at: datetime,
    expires_at: datetime | None,
    reference_price: Decimal | None,
    book_version: int,
    account: Account,
    quote: Quote | None,
    audited: AuditEntry,
    call: tuple[AuditEntry, int] | None = None,
) -> int | None:
    """The decision and its audit row in one statement (one transaction), committed durably: the client is
    told "approved" only once the approval would survive a crash of the database. ``call``: the row of the tool
    call being served and its duration so far, written too; returns its ``audit_id`` (None without it)."""
    written = await conn.fetchval(
        f"""WITH decision AS (
               INSERT INTO risk_decisions (approval_id, cycle_id, market, symbol, side, quantity, order_type,
                   limit_price, stop_loss, take_profit, approved, checks, limits_version, created_at, expires_at,
                   reference_price, role, book_version, account_cash, account_equity, account_buying_power,
                   account_last_equity, account_currency, quote_bid, quote_ask, quote_last, quote_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                       $21, $22, $23, $29, $30, $31, $32)),
           audited AS ({audit.insert_sql(24, 2, identity=33)}),
           called AS ({audit.call_sql(35, when="$35 IS NOT NULL")})
           SELECT audit_id FROM called""",
        approval_id,
        cycle_id,
        market.value,
        intent.symbol,
        intent.side.value,
        intent.quantity,
        intent.order_type.value,
        intent.limit_price,
        intent.stop_loss,
        intent.take_profit,
        approved,
        checks,
        limits_version,
        created_at,
        expires_at,
        reference_price,
        role.value,
        book_version,
        account.cash,
        account.equity,
        account.buying_power,
        account.last_equity,
        account.currency,
        *audit.params(audited),
        None if quote is None else quote.bid,
        None if quote is None else quote.ask,
        None if quote is None else quote.last,
        None if quote is None else quote.at,
        *audit.identity_params(audited),
        *audit.call_params(*(call or (None, None))),
    )
    return None if written is None else int(written)


def approval_of(row: asyncpg.Record) -> ApprovalRecord:
    """An approval from its ``risk_decisions`` row."""
    intent = OrderIntent(
        symbol=row["symbol"],
        side=Side(row["side"]),
        quantity=row["quantity"],
        order_type=OrderType(row["order_type"]),
        limit_price=row["limit_price"],
        stop_loss=row["stop_loss"],
        take_profit=row["take_profit"],
    )
    return ApprovalRecord(
        approval_id=row["approval_id"],
        cycle_id=row["cycle_id"],
        market=Market(row["market"]),
        intent=intent,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        limits_version=row["limits_version"],
        reference_price=row["reference_price"],
        role=OrderRole(row["role"]) if row["role"] is not None else None,
        book_version=row["book_version"],
        quote=None
        if row["quote_at"] is None
        else Quote(
            row["symbol"],
            row["quote_bid"],
            row["quote_ask"],
            row["quote_last"],
            Decimal(0),
            Decimal(0),
            row["quote_at"],
        ),
        account=None
        if row["account_equity"] is None
        else Account(
            cash=row["account_cash"],
            equity=row["account_equity"],
            buying_power=row["account_buying_power"],
            currency=row["account_currency"],
            last_equity=row["account_last_equity"],
        ),
        confirm_sha256=row.get("confirm_sha256"),
    )


async def set_confirmation(conn: Conn, approval_id: UUID, digest: str, audited: AuditEntry) -> None:
    """Record the digest of the one-time token that confirms an unused approval (replacing an earlier one),
    with its audit row, in one statement."""
    await conn.execute(
        f"""WITH confirmed AS (
                UPDATE risk_decisions SET confirm_sha256 = $8 WHERE approval_id = $1 AND used_at IS NULL)
            {audit.insert_sql(2, 7, identity=9)}""",
        approval_id,
        *audit.params(audited),
        audited.cycle_id,
        digest,
        *audit.identity_params(audited),
    )


def use_sql(approval_id: str, at: str) -> str:
    """The UPDATE that marks the approval ``approval_id`` used at ``at`` (SQL expressions), for the statement
    that records the order made of it."""
    return f"UPDATE risk_decisions SET used_at = {at} WHERE approval_id = {approval_id}"
