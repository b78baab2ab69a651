"""The nightly reconcile and ``ledger adopt``: snapshot vs Moodle through the ledger.

``plan`` (pure: the changes), ``guard`` (the mass-drop guard), ``model`` (its
vocabulary), ``driver`` (gather, plan, apply), ``adopt`` (going live),
``report`` (CSV, JSON, HTML), ``snapshot_reader`` (a published snapshot read back).
"""
