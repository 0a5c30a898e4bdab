"""Which of the server's tools the model is offered in each cycle mode, and how they become Anthropic tool
definitions. Pure: the server's listing in, tool definitions out.

The loop owns the cycle (``start_cycle``, ``complete_cycle``) and the heartbeat; the model never gets them.
``scan`` offers reads only, ``close`` reads and exits, ``trade`` every trading tool. The server refuses
out-of-mode calls anyway (DESIGN §4); the loop also refuses a call to a tool it did not offer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.roles import OBSERVER_TOOLS

# The loop's own steps: never handed to the model.
LOOP_TOOLS = frozenset({"start_cycle", "complete_cycle", "record_heartbeat"})
# Reads: the observer role's tools (nothing anyone else relies on changes).
READS = OBSERVER_TOOLS
EXITS = frozenset({"check_risk", "execute_trade", "close_position", "log_decision"})
TRADING = EXITS | {"cancel_order", "sync_positions"}

MODE_TOOLS: Mapping[CycleMode, frozenset[str]] = {
    CycleMode.SCAN: READS,
    CycleMode.CLOSE: READS | EXITS,
    CycleMode.TRADE: READS | TRADING,
}

# Arguments the model may not set. ``confirmation`` is the user's consent to a large or live order: the
# agent's model must not give it for itself, so it is neither offered nor accepted.
WITHHELD_ARGUMENTS: Mapping[str, frozenset[str]] = {"execute_trade": frozenset({"confirmation"})}


@dataclass(frozen=True, slots=True)
class ServerTool:
    """What the server's ``tools/list`` says of one tool."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    read_only: bool

    @property
    def takes_cycle_id(self) -> bool:
        properties = self.input_schema.get("properties")
        return isinstance(properties, Mapping) and "cycle_id" in properties


def offered(mode: CycleMode, listed: Iterable[ServerTool]) -> list[ServerTool]:
    """The tools of ``mode`` the server lists, by name. In ``scan`` a tool must also be read-only by the
    server's own annotation: a reclassified tool drops out rather than slipping in."""
    allowed = MODE_TOOLS[mode] - LOOP_TOOLS
    chosen = [t for t in listed if t.name in allowed and (mode is not CycleMode.SCAN or t.read_only)]
    return sorted(chosen, key=lambda t: t.name)


def model_schema(tool: ServerTool) -> dict[str, Any]:
    """The tool's input schema as the model sees it: withheld arguments removed."""
    schema = copy.deepcopy(dict(tool.input_schema))
    withheld = WITHHELD_ARGUMENTS.get(tool.name, frozenset())
    properties = schema.get("properties")
    if withheld and isinstance(properties, dict):
        for name in withheld:
            properties.pop(name, None)
        if isinstance(schema.get("required"), list):
            schema["required"] = [r for r in schema["required"] if r not in withheld]
    schema.setdefault("type", "object")
    return schema


def definitions(tools: Iterable[ServerTool]) -> list[dict[str, Any]]:
    """Anthropic tool definitions (name, description, input_schema), the last one marked as a prompt-cache
    breakpoint so the whole list is cached."""
    result: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description or t.name, "input_schema": model_schema(t)} for t in tools
    ]
    if result:
        result[-1]["cache_control"] = {"type": "ephemeral"}
    return result


def refusal(tool: str, arguments: Mapping[str, Any], mode: CycleMode, offered_names: Iterable[str]) -> str | None:
    """Why the loop will not send this call (a tool it did not offer, or a withheld argument); None to send."""
    names = sorted(offered_names)
    if tool not in names:
        return (
            f"{tool} is not offered in a {mode.value} cycle; nothing was sent."
            f" The tools of this cycle: {', '.join(names) or 'none'}"
        )
    withheld = sorted(WITHHELD_ARGUMENTS.get(tool, frozenset()) & set(arguments))
    if withheld:
        return (
            f"{tool} with {', '.join(withheld)} is not accepted from the model: a confirmation comes from a"
            " person, never from the agent itself; nothing was sent"
        )
    return None
