"""Directives from a supervisor to an agent: sent to PostgreSQL, delivered once in the agent's next
``start_cycle`` or ``record_heartbeat``, whichever server process it calls."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from catalyst_mcp.domain.errors import InvalidInput, shown
from catalyst_mcp.domain.records import DirectiveRecord
from catalyst_mcp.ports import Clock
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.store import directives
from catalyst_mcp.store.db import Database

AGENT_ID: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TEXT: Final = 2000


def check_agent_id(agent_id: str) -> str:
    if AGENT_ID.fullmatch(agent_id) is None:
        raise InvalidInput(f"malformed agent_id {shown(agent_id)}: letters, digits, '_', '-', '.' only")
    return agent_id


@dataclass(frozen=True, slots=True)
class DirectiveService:
    db: Database
    clock: Clock

    async def send(self, agent_id: str, text: str, expires_in: timedelta, caller: Caller) -> DirectiveRecord:
        check_agent_id(agent_id)
        if not text.strip():
            raise InvalidInput("text must not be empty")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"text is {len(text)} characters: at most {MAX_TEXT}")
        now = self.clock.now()
        async with self.db.transaction() as conn:
            sent = await directives.insert(conn, agent_id, text, caller.subject or caller.name, now, now + expires_in)
            await audit(
                conn,
                caller,
                "send_directive",
                {"agent_id": agent_id, "text": text},
                f"directive {sent.directive_id} queued",
                None,
            )
        return sent

    async def deliver(self, agent_id: str, by: str) -> list[DirectiveRecord]:
        """The directives waiting for ``agent_id``, taken now: each is handed out once."""
        async with self.db.transaction() as conn:
            return await directives.deliver(conn, agent_id, self.clock.now(), by)
