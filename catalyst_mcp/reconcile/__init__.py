"""Reconciliation of the book against a broker snapshot. Pure."""
