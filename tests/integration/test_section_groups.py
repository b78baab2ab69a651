"""Section groups end to end: a swap moves the student between groups; reconcile repairs.

BSC5102Winter2021 takes every section of BSC5102, so with
``consumer.section_groups`` each section (01, 02) has a group of ours whose
idnumber is the section's key. A teacher's own group is never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from consumers.desired import group_idnumber
from enrolstream.wiring.reconcile import run_reconcile
from schemas.events import SectionKey
from tests.integration.conftest import CaptureStack, registration, set_status
from tests.integration.pipeline import ALICE, BOB, Pipeline, open_pipeline
from tests.integration.test_reconcile import publish


def _section(code: str) -> SectionKey:
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="01",
        event_id="BSC5102",
        event_sub_type="LEC",
        section=code,
    )


@contextlib.asynccontextmanager
async def _grouped(capture: CaptureStack, tmp_path: Path) -> AsyncIterator[Pipeline]:
    async with open_pipeline(capture, tmp_path) as pipe:
        consumer = pipe.settings.consumer.model_copy(update={"section_groups": True})
        pipe.settings = pipe.settings.model_copy(update={"consumer": consumer})
        yield pipe


def _groups_of(pipe: Pipeline, person: str) -> set[str]:
    course = pipe.course("BSC")
    return {g.idnumber for g in pipe.sim.state.groups_of(course, pipe.userid(person))}


class TestSwap:
    """Moving between two sections of one course changes groups, not the enrolment."""

    async def test_swap_moves_the_student_between_groups(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Drop 01 and add 02 in one transaction: group 01 left, 02 joined, still in."""
        async with _grouped(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, ALICE, "BSC5102", "01"),
                registration(2, BOB, "BSC5102", "02"),
            )
            await pipe.sync(runner)
            assert _groups_of(pipe, ALICE) == {group_idnumber(_section("01"))}
            assert _groups_of(pipe, BOB) == {group_idnumber(_section("02"))}
            course, alice = pipe.course("BSC"), pipe.userid(ALICE)
            enrolment = pipe.sim.state.enrolment(course, alice)
            calls = pipe.sim.call_counts()

            capture.sql(set_status(1, "D"), registration(3, ALICE, "BSC5102", "02"))
            await pipe.sync(runner)
            assert _groups_of(pipe, ALICE) == {group_idnumber(_section("02"))}
            # never outside the course: no enrolment call at all, the same enrolment
            after = pipe.sim.call_counts()
            for function in ("enrol_manual_unenrol_users", "enrol_manual_enrol_users"):
                assert after[function] == calls[function], function
            assert pipe.sim.state.enrolment(course, alice) == enrolment
            assert pipe.sim.state.has_access(course, alice)
            assert (
                after["core_group_add_group_members"]
                > calls["core_group_add_group_members"]
            )


class TestReconcileGroups:
    """A hand edit of group membership is put right by reconcile, ours only."""

    async def test_membership_converges_after_a_hand_edit(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Alice moved by hand into group 02: reconcile puts her back in 01 only."""
        async with _grouped(capture, tmp_path) as pipe:
            async with pipe.runner() as runner:
                capture.sql(
                    registration(1, ALICE, "BSC5102", "01"),
                    registration(2, BOB, "BSC5102", "02"),
                )
                await pipe.sync(runner)
            state, course = pipe.sim.state, pipe.course("BSC")
            alice = pipe.userid(ALICE)
            ids = {g.idnumber: g.id for g in state.stored_groups(course)}
            one, two = (ids[group_idnumber(_section(c))] for c in ("01", "02"))
            teachers = state.add_group(course, "Tuesday lab")
            state.set_group_member(one, alice, member=False)
            state.set_group_member(two, alice, member=True)
            state.set_group_member(teachers, alice, member=True)

            await publish(pipe)
            dry = await run_reconcile(pipe.settings, pipe.bootstrap)
            assert dry.plan is not None
            assert _groups_of(pipe, ALICE) == {group_idnumber(_section("02")), ""}
            result = await run_reconcile(pipe.settings, pipe.bootstrap, apply=True)
            assert result.plan is not None
            assert state.group_members(one) == {alice}
            assert alice not in state.group_members(two)
            assert alice in state.group_members(teachers)  # not ours: untouched
            again = await run_reconcile(pipe.settings, pipe.bootstrap)
            assert again.plan is not None
            assert not again.plan.changes
