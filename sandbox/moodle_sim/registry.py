"""Every simulated web-service function, by name: the one module that knows them all."""

from __future__ import annotations

from sandbox.moodle_sim import (
    users,
    ws_accounts,
    ws_categories,
    ws_companion,
    ws_core,
    ws_enrol,
    ws_groups,
    ws_roles,
    ws_rosters,
)
from sandbox.moodle_sim.api import WsFunction

__all__ = ["all_functions"]


def all_functions() -> dict[str, WsFunction]:
    """Every simulated function by name (add-on plugins' too: see ``WsFunction.plugin``)."""
    return {
        **ws_enrol.FUNCTIONS,
        **ws_roles.FUNCTIONS,
        **ws_companion.FUNCTIONS,
        **ws_rosters.FUNCTIONS,
        **users.FUNCTIONS,
        **ws_accounts.FUNCTIONS,
        **ws_core.FUNCTIONS,
        **ws_categories.FUNCTIONS,
        **ws_groups.FUNCTIONS,
    }
