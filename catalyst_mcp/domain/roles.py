"""Who may call what (DESIGN §6): three roles, each a set of tools. Resources and prompts are open to every
role. A tool outside the caller's role is neither listed nor callable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    OBSERVER = "observer"
    TRADER = "trader"
    SUPERVISOR = "supervisor"


# Reads that change nothing anyone else relies on (check_risk is not here: its approval is a reservation).
OBSERVER_TOOLS: Final = frozenset(
    {"get_portfolio", "scan_market", "get_quote", "get_technicals", "workflow_status", "list_cycles", "get_orders"}
)
TRADER_TOOLS: Final = OBSERVER_TOOLS | {
    "start_cycle",
    "sync_positions",
    "check_risk",
    "execute_trade",
    "close_position",
    "cancel_order",
    "log_decision",
    "complete_cycle",
    "record_heartbeat",
}
SUPERVISOR_TOOLS: Final = OBSERVER_TOOLS | {"halt_trading", "resume_trading", "send_directive", "list_audit"}

EVERY_TOOL: Final = TRADER_TOOLS | SUPERVISOR_TOOLS

TOOLS_OF: Final[dict[Role, frozenset[str]]] = {
    Role.OBSERVER: OBSERVER_TOOLS,
    Role.TRADER: TRADER_TOOLS,
    Role.SUPERVISOR: SUPERVISOR_TOOLS,
}


def may_call(role: Role, tool: str) -> bool:
    return tool in TOOLS_OF[role]


@dataclass(frozen=True, slots=True)
class Grant:
    """A bearer token's holder: who it names and the role it gives."""

    subject: str
    role: Role
    created_at: datetime
