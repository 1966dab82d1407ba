"""Reconciliation: Stripe and the room calendars against our own records, and the fixes for what differs.

Modules, lowest first. Reading: `sync` (Stripe + calendars → local cache), `findings` (finding codes, their labels
and the read model the pages use), `cache` (the cache as one run reads it), `detectors` (one detector per finding
code), `reconcile` (runs the detectors, persists findings, acknowledges them), `cycle` (one sync → reconcile).
Fixing: `fixes` (what every fix shares), `probes` (what Stripe and the calendars say now), `steps` (booking steps
the fixes share), `adopt` (payments the old system made), `plans` (one planner per action) and `remediate` (runs
them: describe_action, run_action, run_bulk).
"""
