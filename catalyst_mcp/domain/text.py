"""Text PostgreSQL can store: no NUL character, and valid Unicode (JSON may carry unpaired surrogates, which
cannot be encoded)."""

from __future__ import annotations

from typing import Any


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode)"
    return None


def first_unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """The first string in ``value`` (keys included, nested in objects and arrays) that cannot be stored: its
    path and why."""
    if isinstance(value, str):
        problem = unstorable(value)
        return None if problem is None else (path, problem)
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (problem := unstorable(key)) is not None:
                return (path or "arguments", f"has a key that {problem}")
            if (found := first_unstorable(item, inner)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := first_unstorable(item, f"{path}[{index}]")) is not None:
                return found
    return None


def storable(value: Any) -> Any:
    """``value`` with every string made storable: NUL as U+FFFD, an unpaired surrogate as '?'."""
    if isinstance(value, str):
        if unstorable(value) is None:
            return value
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value
