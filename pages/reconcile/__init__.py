"""Reconciliation screens: Overview, Mismatches."""
