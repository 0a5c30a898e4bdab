"""Error taxonomy, grouped by what the caller must do."""

from __future__ import annotations


class CatalystError(Exception):
    """Base of every error this package raises on purpose. The message is one line."""


class InvalidInput(CatalystError):
    """The caller must fix the request (malformed value, unknown id, misuse)."""


class Conflict(InvalidInput):
    """The request clashes with current state (a second active cycle, a used approval)."""


class TemporaryFailure(CatalystError):
    """Retry later: timeouts, rate limits, a broker's 5xx."""


class OperatorNeeded(CatalystError):
    """A human must act: bad credentials, misconfiguration, a corrupt store."""


class BrokerRejected(CatalystError):
    """The broker refused a well-formed order; the message says why."""


SHOWN_MAX = 80


def shown(value: str, limit: int = SHOWN_MAX) -> str:
    """A caller's value quoted for an error message: on one line, and cut to ``limit`` characters with its
    length said, so an error never echoes a huge input back."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[: limit - 1]!r}… ({len(value)} characters)"
