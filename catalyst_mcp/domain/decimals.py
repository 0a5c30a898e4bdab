"""Decimal helpers shared by the edges."""

from __future__ import annotations

from decimal import MAX_PREC, ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal

# Normalising under this context strips trailing zeros and never rounds, whatever the number of digits.
_EXACT = Context(prec=MAX_PREC)


def plain(value: Decimal) -> str:
    """A decimal in plain notation without trailing zeros: ``100``, ``190.12``, never ``1E+2``."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    text = format(value.normalize(_EXACT), "f")
    return "0" if text in ("-0", "0") else text


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``value`` (for positive values)."""
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_to(value: Decimal, step: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """``value`` rounded to a multiple of ``step`` (half-even unless told), written with ``step``'s places."""
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)
