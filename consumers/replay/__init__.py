"""Replay after an outage: the ledger re-checked against Moodle, the group moved back.

``offsets`` (pure: where to start), ``ledger_check`` (the ledger made true to a
restored Moodle), ``driver`` (the command's steps).
"""
