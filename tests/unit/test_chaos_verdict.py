"""The fault matrix's judge and planner: what counts as lost, wrong, explained, justified."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.chaos_plan import KINDS, draw_kinds, draw_params, plan_run
from bench.chaos_verdict import (
    Verdict,
    judge_creations,
    judge_dead_letters,
    judge_welcomes,
)
from bench.chaos_workload import Row, Section

PEOPLE = {10: "P000000010", 11: "P000000011"}
NAMES = {2: "C2", 3: "C3"}


def enrol(
    userid: int,
    *,
    existed: bool,
    arrived: float,
    applied: float,
    gone: bool = False,
    welcome: bool = True,
    suspend: int = 0,
) -> dict[str, Any]:
    """A journal line for one enrol row."""
    return {
        "function": "enrol_manual_enrol_users",
        "courseid": 2,
        "userid": userid,
        "roleid": 5,
        "suspend": suspend,
        "existed": existed,
        "status_before": 0 if existed else None,
        "roles_before": [5] if existed else [],
        "welcome": welcome,
        "client_gone": gone,
        "arrived": arrived,
        "applied": applied,
        "call": "1-1",
    }


def read(at: float) -> dict[str, Any]:
    """A journal line for a roster read of course 2."""
    return {
        "function": "core_enrol_get_enrolled_users",
        "courseid": 2,
        "arrived": at,
        "applied": at,
        "client_gone": False,
        "call": "1-2",
    }


class TestJudgeWelcomes:
    """Every welcome message is for a new enrolment, explained, or a defect."""

    def test_a_new_enrolment_welcomes(self) -> None:
        """A welcome on an enrolment that did not exist is the expected one."""
        verdict = Verdict()
        judge_welcomes(
            verdict,
            [enrol(10, existed=False, arrived=1, applied=1)],
            people=PEOPLE,
            names=NAMES,
        )
        assert (verdict.welcomes_new, verdict.welcomes_unexplained) == (1, [])

    def test_a_re_enrol_the_client_was_waiting_for_is_a_defect(self) -> None:
        """A second welcome from a call whose client got the answer is unexplained."""
        verdict = Verdict()
        journal = [
            enrol(10, existed=False, arrived=1, applied=1),
            enrol(10, existed=True, arrived=5, applied=5),
        ]
        judge_welcomes(verdict, journal, people=PEOPLE, names=NAMES)
        assert len(verdict.welcomes_unexplained) == 1
        assert verdict.welcomes_explained == []

    def test_a_late_request_applied_after_its_client_left_is_explained(self) -> None:
        """The resend created the enrolment; the hung request landed on it later."""
        verdict = Verdict()
        journal = [
            enrol(10, existed=False, arrived=4, applied=4),
            enrol(10, existed=True, arrived=1, applied=6, gone=True),
        ]
        judge_welcomes(verdict, journal, people=PEOPLE, names=NAMES)
        assert len(verdict.welcomes_explained) == 1
        assert verdict.welcomes_unexplained == []

    @pytest.mark.parametrize(("read_at", "explained"), [(3.0, True), (0.5, False)])
    def test_a_resend_onto_a_late_creation_needs_a_read_back_in_between(
        self, read_at: float, explained: bool
    ) -> None:
        """The hung request created the enrolment after the consumer read the course
        back (it could not know): explained only with that read in between."""
        verdict = Verdict()
        journal = [
            read(read_at),
            enrol(10, existed=False, arrived=1, applied=4.5, gone=True),
            enrol(10, existed=True, arrived=5, applied=5),
        ]
        judge_welcomes(verdict, journal, people=PEOPLE, names=NAMES)
        assert (len(verdict.welcomes_explained), len(verdict.welcomes_unexplained)) == (
            (1, 0) if explained else (0, 1)
        )


class TestJudgeCreationsAndLetters:
    """New enrolments follow PowerCampus; dead letters are the poison records."""

    def test_creations_for_pairs_never_enrolled_or_suspended_are_flagged(self) -> None:
        """Created suspended, or for a pair PowerCampus never held: both counted."""
        verdict = Verdict()
        journal = [
            enrol(10, existed=False, arrived=1, applied=1, suspend=1),
            enrol(11, existed=False, arrived=1, applied=1),
        ]
        judge_creations(
            verdict,
            journal,
            {2: {"P000000010"}},
            {2: set()},
            people=PEOPLE,
            names=NAMES,
        )
        assert verdict.created_suspended == ["C2 P000000010"]
        assert verdict.created_never_enrolled == ["C2 P000000011"]
        assert verdict.created_then_dropped == 1

    def test_dead_letters_must_be_the_poison_records(self) -> None:
        """A letter for a poison record is justified, twice is a redelivery; a letter
        for anything else, or a poison record without one, is a failure."""
        verdict = Verdict()
        letter = {"source_topic": "t", "error_type": "InvalidEvent", "reason": "bad"}
        letters = [
            {**letter, "source_partition": 1, "source_offset": 4},
            {**letter, "source_partition": 1, "source_offset": 4},
            {**letter, "source_partition": 2, "source_offset": 9},
        ]
        judge_dead_letters(verdict, letters, [(1, 4), (3, 0)], "t")
        assert verdict.dead_letters_redelivered == 1
        assert len(verdict.dead_letters_unjustified) == 1
        assert verdict.poison_not_dead_lettered == ["t[3]@0"]
        assert len(verdict.failures()) == 2


class TestPlan:
    """A seed draws the same run; each kind's draws are its own."""

    ROWS = (Row("P000000010", "BSC5102", "LEC", "01", "A"),)
    SECTIONS = (Section("BSC5102", "LEC", "01"), Section("BSC5102", "LEC", "02"))

    def plan(self, seed: int, kinds: tuple[str, ...]) -> Any:
        """A quick plan over a one-course term."""
        return plan_run(
            seed,
            kinds,
            quick=True,
            rows=[
                Row(r.person, r.stored_event_id, r.sub_type, r.section, r.adw)
                for r in self.ROWS
            ],
            sections=self.SECTIONS,
            crosslisted=[],
            people=["P000000010", "P000000011"],
        )

    def test_same_seed_same_plan(self) -> None:
        """Replaying a seed gives the same steps, faults and crash points."""
        assert self.plan(7, tuple(KINDS)) == self.plan(7, tuple(KINDS))

    def test_leaving_a_kind_out_keeps_the_others(self) -> None:
        """The faults of one kind do not depend on which other kinds are drawn."""
        alone = self.plan(7, ("moodle-hang",)).faults
        together = [
            f for f in self.plan(7, tuple(KINDS)).faults if f.kind == "moodle-hang"
        ]
        assert list(alone) == together

    def test_every_kind_has_parameters_and_kinds_are_drawn_from_the_allowed(
        self,
    ) -> None:
        """Each kind but the crash points draws parameters (a join has none: the
        member held back joins); draws stay within --faults."""
        for kind in KINDS:
            if "crash" not in kind and kind != "member-join":
                rng = random.Random(1)  # noqa: S311 - a seeded draw, not a secret
                assert draw_params(kind, rng, quick=True)
        assert set(draw_kinds(3, ["poison", "moodle-5xx"])) <= {"poison", "moodle-5xx"}
