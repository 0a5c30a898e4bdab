"""Faults of the simulated exchange, for outage drills: what an operation does when one is set.

A fault lives in ``sim.faults`` (so every process on the database sees it) and applies to the next ``remaining``
calls of its operation, or until cleared. It is consumed inside the operation's own first statement: the
``WITH`` clause of :func:`with_fault` leaves the mode in the column ``fault``.
"""

from __future__ import annotations

from enum import StrEnum

from catalyst_mcp.domain.errors import InvalidInput, TemporaryFailure, shown


class FaultOp(StrEnum):
    SUBMIT = "submit"  # submit_order and protect
    GET_ORDER = "get_order"  # get_order_by_client_id
    GET_ORDERS = "get_orders"  # get_open_orders
    GET_POSITIONS = "get_positions"
    GET_ACCOUNT = "get_account"
    CANCEL = "cancel"  # cancel_order
    QUOTE = "quote"  # get_quote


class FaultMode(StrEnum):
    ERROR = "error"  # refused: nothing happened
    TIMEOUT = "timeout"  # no answer: nothing happened
    LOST_REPLY = "lost-reply"  # the broker acted, then the answer was lost
    EMPTY = "empty"  # reads only: an empty answer


READ_OPS = frozenset({FaultOp.GET_ORDER, FaultOp.GET_ORDERS, FaultOp.GET_POSITIONS, FaultOp.QUOTE})


def parse_fault(operation: str, mode: str) -> tuple[FaultOp, FaultMode]:
    """The operation and mode named by an operator; one-line InvalidInput for anything else."""
    try:
        op = FaultOp(operation)
    except ValueError:
        raise InvalidInput(f"unknown operation {shown(operation)}: expected one of {', '.join(FaultOp)}") from None
    try:
        kind = FaultMode(mode)
    except ValueError:
        raise InvalidInput(f"unknown fault mode {shown(mode)}: expected one of {', '.join(FaultMode)}") from None
    if kind is FaultMode.EMPTY and op not in READ_OPS:
        raise InvalidInput(f"'empty' applies to reads only ({', '.join(sorted(READ_OPS))}), not to {op}")
    return op, kind


def with_fault(op: FaultOp | None) -> tuple[str, str]:
    """(a WITH clause that consumes one fault of ``op`` for the market in $1, the SQL expression of its mode).

    Without ``op`` (a control's own read) no fault is consumed and the mode is NULL. The clause may be extended
    with more common table expressions after a comma.
    """
    if op is None:
        return "WITH nothing AS (SELECT 1)", "NULL::text"
    literal = f"'{op.value}'"  # a closed set of names: safe to inline, and keeps $1 the only parameter used
    return (
        f"""WITH hit AS (SELECT mode, remaining FROM sim.faults WHERE market = $1 AND operation = {literal}
                        FOR UPDATE),
             spent AS (DELETE FROM sim.faults f USING hit
                       WHERE f.market = $1 AND f.operation = {literal} AND hit.remaining = 1),
             used AS (UPDATE sim.faults f SET remaining = f.remaining - 1 FROM hit
                      WHERE f.market = $1 AND f.operation = {literal} AND hit.remaining > 1)""",
        "(SELECT mode FROM hit)",
    )


def mode_of(value: object) -> FaultMode | None:
    return None if value is None else FaultMode(str(value))


def refuse_before(op: FaultOp | None, mode: FaultMode | None) -> None:
    """Raise for the modes in which the broker does nothing."""
    if op is None:
        return
    if mode is FaultMode.ERROR:
        raise TemporaryFailure(f"the simulated broker is unavailable: it refused {op} (injected error)")
    if mode is FaultMode.TIMEOUT:
        raise TemporaryFailure(f"the simulated broker did not answer {op} (injected timeout)")


def refuse_after(op: FaultOp | None, mode: FaultMode | None) -> None:
    """Raise for the mode in which the broker acted but its answer is lost."""
    if op is not None and mode is FaultMode.LOST_REPLY:
        raise TemporaryFailure(f"the simulated broker's answer to {op} was lost (injected lost reply)")
