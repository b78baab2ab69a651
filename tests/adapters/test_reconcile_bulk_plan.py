"""The nightly reconcile plans alike through the plugin's bulk read and core's listings."""

from __future__ import annotations

import dataclasses

import pytest

from bench.reconcile import POLICY, Site
from consumers.identity import IdentityResolver
from consumers.reconcile.driver import gather_inputs, make_plan
from consumers.reconcile.guard import GuardLimits
from consumers.reconcile.model import ReconcilePlan
from sandbox.moodle_sim.inprocess import InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_READ_SERVICE_FUNCTIONS,
    WSCLIENT_USER_ID,
)

TOKEN = "e" * 32
DAY_S = 86400


def _site(*, groups: bool) -> Site:
    """A small site with 30 % drift of every kind, plus ended, future and disabled ones."""
    site = Site(12, 8, 0.3, seed=11, groups=groups)
    state = site.state
    state.site = dataclasses.replace(state.site, plugins=(COMPANION_PLUGIN,))
    state.add_token(TOKEN, WSCLIENT_USER_ID, functions=COMPANION_READ_SERVICE_FUNCTIONS)
    now, (first, second, third) = state.now(), site.course_ids[:3]
    ended, future = (v.userid for v in state.enrolments(first)[:2])
    state.unenrol(first, ended)
    state.enrol(first, ended, 5, timestart=now - 9 * DAY_S, timeend=now - DAY_S)
    state.unenrol(first, future)
    state.enrol(first, future, 5, timestart=now + 9 * DAY_S)
    state.set_manual_instance(second, "disabled")
    state.set_account_suspended(state.enrolments(third)[0].userid)
    return site


async def _plan(site: Site, *, bulk: bool) -> tuple[ReconcilePlan, list[str]]:
    client = InProcessMoodle(MoodleSimulator(site.state, token=TOKEN))
    client.bulk_rosters = bulk
    resolver = IdentityResolver(client)
    inputs = await gather_inputs(client, resolver, site.snapshot, site.mapping)
    plan = make_plan(
        inputs,
        mapping=site.mapping,
        policy=dataclasses.replace(POLICY, section_groups=site.groups is not None),
        ledger=await site.ledger(),
        limits=GuardLimits(per_course=1.0, overall=1.0),
        resolver=resolver,
        groups=site.groups,
    )
    return plan, [call.function for call in client.simulator.calls]


class TestSamePlan:
    """Fast path and fallback decide alike on the same Moodle state."""

    @pytest.mark.parametrize("groups", [False, True])
    async def test_plans_are_identical(self, *, groups: bool) -> None:
        """Changes, unowned differences, unresolved persons, counts and guard all equal."""
        fast, fast_calls = await _plan(_site(groups=groups), bulk=True)
        slow, slow_calls = await _plan(_site(groups=groups), bulk=False)
        assert fast == slow
        assert len(fast.changes) > 10
        assert {c.kind for c in fast.changes} >= {"enrol", "reactivate", "restore_role"}
        assert "core_enrol_get_enrolled_users" not in fast_calls
        assert "local_enrolstream_get_course_enrolments" not in slow_calls
