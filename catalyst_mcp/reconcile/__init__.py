"""Reconciliation of the book against a broker snapshot. Pure."""

from catalyst_mcp.reconcile.diff import DEFAULT_PRICE_TOLERANCE, diff, looks_like_outage
from catalyst_mcp.reconcile.plan import Change, ChangeKind, Fold, FoldSource, InFlight, Skipped, SyncPlan

__all__ = [
    "DEFAULT_PRICE_TOLERANCE",
    "Change",
    "ChangeKind",
    "Fold",
    "FoldSource",
    "InFlight",
    "Skipped",
    "SyncPlan",
    "diff",
    "looks_like_outage",
]
