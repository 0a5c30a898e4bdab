"""Clocks implementing `catalyst_mcp.ports.Clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until it is set or advanced (for tests and replays)."""

    def __init__(self, at: datetime) -> None:
        self._at = self._checked(at)

    @staticmethod
    def _checked(at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"datetime must be timezone-aware, got naive {at.isoformat()}")
        return at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = self._checked(at)

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock by `delta` and return the new time."""
        self._at += delta
        return self._at
