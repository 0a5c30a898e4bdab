"""Changes announced across server processes: what the store's triggers say changed, and what a server
publishes to the subscribers of every process. Transports turn them into notifications of their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from catalyst_mcp.domain.enums import Market

Listing = Literal["tools", "prompts", "resources"]


@dataclass(frozen=True, slots=True)
class CycleChanged:
    """A cycle started, recorded a phase or ended."""

    cycle_id: str
    market: Market | None = None


@dataclass(frozen=True, slots=True)
class AgentSeen:
    """An agent's heartbeat moved."""

    agent_id: str | None = None
    market: Market | None = None


@dataclass(frozen=True, slots=True)
class PositionsChanged:
    """The book of ``market`` changed (None: of every market)."""

    market: Market | None = None


@dataclass(frozen=True, slots=True)
class TradingStateChanged:
    market: Market | None = None


@dataclass(frozen=True, slots=True)
class MonitorChanged:
    """The position monitor of ``market`` took its lease, made a pass or failed one."""

    market: Market | None = None


@dataclass(frozen=True, slots=True)
class BookReset:
    """The whole book was wiped."""


@dataclass(frozen=True, slots=True)
class ResourceChanged:
    """A server announced a change of one resource, by URI."""

    uri: str


@dataclass(frozen=True, slots=True)
class ListChanged:
    """A server announced that a list (its tools, prompts or resources) changed."""

    what: Listing


Change = (
    CycleChanged
    | AgentSeen
    | PositionsChanged
    | TradingStateChanged
    | MonitorChanged
    | BookReset
    | ResourceChanged
    | ListChanged
)
Published = ResourceChanged | ListChanged  # what a server may publish itself


def concerns(change: PositionsChanged | TradingStateChanged | MonitorChanged, market: Market) -> bool:
    """Whether a change of the book or the trading state concerns a server of ``market``."""
    return change.market is None or change.market is market
