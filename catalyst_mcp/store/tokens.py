"""The tokens file (``CATALYST_TOKENS_FILE``, default ``tokens.toml`` in the data dir): one entry per subject
with its role and the SHA-256 of its token, never the token. Written atomically and readable by its owner only;
a running server reads it again when it changes, so a revoked token stops working at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pathlib
import re
import secrets
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from catalyst_mcp.domain.errors import InvalidInput, OperatorNeeded, shown
from catalyst_mcp.domain.roles import Grant, Role

SUBJECT: Final = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PREFIX: Final = "cat_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    grant: Grant
    sha256: str


class TokenFile:
    """The ``Grants`` port over one file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._entries: tuple[_Entry, ...] = ()

    # --- reading ---------------------------------------------------------------------------------------

    def _load(self) -> tuple[_Entry, ...]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._entries = None, ()
            return ()
        key = (stat.st_mtime_ns, stat.st_size)
        if key != self._seen:
            self._entries = _parse(self.path)
            self._seen = key
        return self._entries

    def grants(self) -> list[Grant]:
        return [e.grant for e in self._load()]

    def is_empty(self) -> bool:
        return not self._load()

    def lookup(self, token: str) -> Grant | None:
        wanted = digest(token)
        found = None
        for entry in self._load():
            if hmac.compare_digest(entry.sha256, wanted):  # constant time whatever matches
                found = entry.grant
        return found

    # --- writing ---------------------------------------------------------------------------------------

    def add(self, subject: str, role: Role, at: datetime | None = None) -> str:
        """A fresh token for ``subject``; only its digest is stored. Returns the token (shown once)."""
        if SUBJECT.fullmatch(subject) is None:
            raise InvalidInput(f"malformed subject {shown(subject)}: letters, digits, '_', '.', '@', '-' (at most 64)")
        entries = list(self._load())
        if any(e.grant.subject == subject for e in entries):
            raise InvalidInput(f"{subject} already has a token: revoke it first (catalyst-mcp token revoke {subject})")
        token = PREFIX + secrets.token_urlsafe(32)
        entries.append(_Entry(Grant(subject, role, at or datetime.now(UTC)), digest(token)))
        self._write(entries)
        return token

    def revoke(self, subject: str) -> bool:
        entries = list(self._load())
        kept = [e for e in entries if e.grant.subject != subject]
        if len(kept) == len(entries):
            return False
        self._write(kept)
        return True

    def _write(self, entries: list[_Entry]) -> None:
        lines = ["# Catalyst MCP bearer tokens: SHA-256 digests only. Manage with `catalyst-mcp token`.", ""]
        for e in entries:
            lines += [
                "[[token]]",
                f"subject = {json.dumps(e.grant.subject)}",
                f"role = {json.dumps(e.grant.role.value)}",
                f"sha256 = {json.dumps(e.sha256)}",
                f"created_at = {json.dumps(e.grant.created_at.isoformat())}",
                "",
            ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-", suffix=".toml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
        self._seen = None


def _parse(path: pathlib.Path) -> tuple[_Entry, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return tuple(
            _Entry(
                Grant(str(t["subject"]), Role(t["role"]), datetime.fromisoformat(str(t["created_at"]))),
                str(t["sha256"]),
            )
            for t in data.get("token", [])
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OperatorNeeded(f"the tokens file {path} cannot be read: {type(exc).__name__}: {exc}") from None
