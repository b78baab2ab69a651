"""Instructors, term withdrawals and accounts end to end: sandbox → poller → broker → Moodle.

Each test commits what a registrar (or IT) would in PowerCampus, runs one poll
and the consumer until idle, and checks what the Moodle simulator holds: the
roles of each person per course, accounts made, parked persons and their reasons.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from enrolstream.cli import root as cli
from enrolstream.settings import AccountsSettings, ConsumerSettings
from tests.integration.conftest import CaptureStack, registration, set_status
from tests.integration.pipeline import (
    ALICE,
    BOB,
    DAVE,
    ERIN,
    NO_ACCOUNT,
    STUDENT,
    Pipeline,
    open_pipeline,
)

pytestmark = pytest.mark.integration

EDITING, SECONDARY, AUDIT = 3, 4, 4
ACCOUNTS = AccountsSettings(enabled=True, auth="manual")


def teaches(person: str, course: str, section: str = "01", share: int = 100) -> str:
    """A SECTIONPER row: ``person`` teaches ``course``/``section``."""
    return (
        "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
        "EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES "
        f"('2021', 'Winter', '01', '{course}', 'LEC', '{section}', '{person}', {share})"
    )


def share(person: str, value: int) -> str:
    """An update of every SECTIONPER row of ``person`` to PERCENTAGE ``value``."""
    return (
        f"UPDATE SECTIONPER SET PERCENTAGE = {value} WHERE PERSON_CODE_ID = '{person}'"
    )


def standing(person: str, code: str) -> str:
    """The person's term record for 2021/Winter with ENROLL_SEPARATION ``code``."""
    return (
        "INSERT INTO ACADEMIC (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, "
        f"ACADEMIC_SESSION, TRANSCRIPT_SEQ, ENROLL_SEPARATION) VALUES ('{person}', "
        f"'2021', 'Winter', '', '001', '{code}') ON CONFLICT DO UPDATE SET "
        "ENROLL_SEPARATION = excluded.ENROLL_SEPARATION"
    )


def person(who: str, n: int, first: str, last: str, login: str) -> str:
    """PEOPLE, the primary e-mail and the portal login of a person."""
    return (
        "INSERT INTO PEOPLE (PEOPLE_CODE_ID, PEOPLE_ID, PersonId, FIRST_NAME, LAST_NAME) "
        f"VALUES ('{who}', '{who[1:]}', {n}, '{first}', '{last}');"
        "INSERT INTO EmailAddress (EmailAddressId, PeopleOrgCodeId, Email, IsActive) "
        f"VALUES ({n}, '{who}', '{login}@students.example.edu', 1);"
        f"UPDATE PEOPLE SET PrimaryEmailId = {n} WHERE PEOPLE_CODE_ID = '{who}';"
        "INSERT INTO PersonUser (PersonUserId, PersonId, UserName) "
        f"VALUES ({n}, {n}, '{login}')"
    )


def roles(pipe: Pipeline, who: str, course: str) -> set[int]:
    """The roles ``who`` holds in the course (empty: none, or no enrolment)."""
    return set(pipe.sim.state.roles_of(pipe.course(course), pipe.userid(who)))


class TestInstructors:
    """SECTIONPER: instructors added, made secondary, removed; students elsewhere."""

    async def test_added_changed_to_secondary_removed(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """editingteacher, then teacher (exactly one role), then no role of ours."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(teaches(DAVE, "BSC5102"))
            await pipe.sync(runner)
            assert roles(pipe, DAVE, "BSC5102") == {EDITING}
            capture.sql(share(DAVE, 0))
            await pipe.sync(runner)
            assert roles(pipe, DAVE, "BSC5102") == {SECONDARY}
            capture.sql("DELETE FROM SECTIONPER")
            await pipe.sync(runner)
            assert roles(pipe, DAVE, "BSC5102") == set()
            assert not pipe.sim.state.has_access(
                pipe.course("BSC5102"), pipe.userid(DAVE)
            )
            assert runner.stats.dead_lettered == 0

    async def test_instructor_here_student_there(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Teaching one course and studying another: each role in its course, untouched."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                teaches(ERIN, "COUN6552", "02"), registration(1, ERIN, "BSC5102")
            )
            await pipe.sync(runner)
            assert roles(pipe, ERIN, "COUN6552") == {EDITING}
            assert roles(pipe, ERIN, "BSC5102") == {STUDENT}
            capture.sql(set_status(1, "D"))
            await pipe.sync(runner)
            assert roles(pipe, ERIN, "COUN6552") == {EDITING}
            assert roles(pipe, ERIN, "BSC5102") == set()

    async def test_student_and_instructor_in_one_course(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Both roles in one course, one welcome; dropping as a student keeps teaching."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, BOB, "BSC5102"), teaches(BOB, "BSC5102", "02", 0)
            )
            await pipe.sync(runner)
            assert roles(pipe, BOB, "BSC5102") == {STUDENT, SECONDARY}
            assert pipe.sim.call_counts()["enrol_manual_enrol_users"] == 1
            capture.sql(set_status(1, "D"))
            await pipe.sync(runner)
            assert roles(pipe, BOB, "BSC5102") == {SECONDARY}


class TestTermWithdrawals:
    """ACADEMIC: a separation drops every course of the term; clearing it restores."""

    async def test_withdrawal_with_rows_still_a_and_its_reversal(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """WITH drops both courses though TRANSCRIPTDETAIL still says 'A'; ENRL restores."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, ALICE, "COUN6552", "02"),
                standing(ALICE, "ENRL"),
            )
            await pipe.sync(runner)
            assert pipe.moodle() == pipe.truth()
            welcomes = len(pipe.sim.state.notifications)
            capture.sql(standing(ALICE, "WITH"))
            await pipe.sync(runner)
            still_a = capture.sandbox.query(
                "SELECT DISTINCT ADD_DROP_WAIT FROM TRANSCRIPTDETAIL"
            )
            assert still_a == [("A",)]
            assert (
                roles(pipe, ALICE, "BSC5102") == roles(pipe, ALICE, "COUN6552") == set()
            )
            capture.sql(standing(ALICE, "ENRL"))
            await pipe.sync(runner)
            assert (
                roles(pipe, ALICE, "BSC5102")
                == roles(pipe, ALICE, "COUN6552")
                == {STUDENT}
            )
            assert len(pipe.sim.state.notifications) == welcomes  # no second welcome


class TestAccounts:
    """A new person's account made from PowerCampus; collisions parked with why."""

    async def test_new_student_created_and_enrolled_within_one_poll(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """One poll: the account (username from PersonUser) exists and is enrolled."""
        async with (
            open_pipeline(capture, tmp_path, accounts=ACCOUNTS) as pipe,
            pipe.runner() as runner,
        ):
            capture.sql(
                person(NO_ACCOUNT, 9, "Nia", "Okafor", "nia.okafor"),
                registration(1, NO_ACCOUNT, "BSC5102"),
            )
            await pipe.sync(runner)
            user = pipe.sim.state.user(pipe.userid(NO_ACCOUNT))
            assert user is not None
            assert (user.username, user.email, user.auth) == (
                "nia.okafor",
                "nia.okafor@students.example.edu",
                "manual",
            )
            assert roles(pipe, NO_ACCOUNT, "BSC5102") == {STUDENT}
            assert len(runner.parked) == 0

    async def test_username_collision_parked_then_released(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Taken username: parked with the exact reason; a new login name releases it."""
        async with (
            open_pipeline(capture, tmp_path, accounts=ACCOUNTS) as pipe,
            pipe.runner() as runner,
        ):
            taken = pipe.sim.state.add_user("nia.okafor", email="alumna@example.org")
            capture.sql(
                person(NO_ACCOUNT, 9, "Nia", "Okafor", "nia.okafor"),
                registration(1, NO_ACCOUNT, "BSC5102"),
            )
            await pipe.sync(runner)
            parked = runner.parked.get(NO_ACCOUNT, "2021/Winter")
            assert parked is not None
            assert f"username 'nia.okafor' is taken by Moodle user {taken}" in (
                parked.reason
            )
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": pipe.bootstrap,
                "ENROLSTREAM_KAFKA__PARKED_TOPIC": pipe.settings.kafka.parked_topic,
            }
            listed = await asyncio.to_thread(
                CliRunner().invoke, cli.app, ["parked", "list"], env=env
            )
            assert listed.exit_code == 0, listed.output
            assert NO_ACCOUNT in listed.output
            assert "username 'nia.okafor' is taken" in listed.output
            capture.sql(
                "UPDATE PersonUser SET UserName = 'nia.okafor2' WHERE PersonId = 9"
            )
            await pipe.sync(runner)
            assert runner.parked.get(NO_ACCOUNT, "2021/Winter") is None
            user = pipe.sim.state.user(pipe.userid(NO_ACCOUNT))
            assert user is not None
            assert user.username == "nia.okafor2"
            assert roles(pipe, NO_ACCOUNT, "BSC5102") == {STUDENT}

    async def test_names_updated_for_ours_never_for_others(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A new last name reaches the account we made; another account keeps its name."""
        async with (
            open_pipeline(capture, tmp_path, accounts=ACCOUNTS) as pipe,
            pipe.runner() as runner,
        ):
            capture.sql(
                person(NO_ACCOUNT, 9, "Nia", "Okafor", "nia.okafor"),
                person(ALICE, 1, "Alice", "Ames", "alice.ames"),
                registration(1, NO_ACCOUNT, "BSC5102"),
                registration(2, ALICE, "BSC5102"),
            )
            await pipe.sync(runner)
            alice_before = pipe.sim.state.user(pipe.userid(ALICE))
            assert alice_before is not None
            alice_name = (alice_before.firstname, alice_before.lastname)
            capture.sql(
                "UPDATE PEOPLE SET LAST_NAME = 'Okafor-Bell' WHERE PersonId = 9"
            )
            capture.sql("UPDATE PEOPLE SET LAST_NAME = 'Changed' WHERE PersonId = 1")
            await pipe.sync(runner)
            ours = pipe.sim.state.user(pipe.userid(NO_ACCOUNT))
            theirs = pipe.sim.state.user(pipe.userid(ALICE))
            assert ours is not None
            assert theirs is not None
            assert ours.lastname == "Okafor-Bell"
            assert (theirs.firstname, theirs.lastname) == alice_name


class TestRoleChanges:
    """A role change leaves exactly one role of ours."""

    async def test_student_to_audit_and_back(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Credit ↔ audit: the old role is taken away each time, one role remains."""
        async with open_pipeline(capture, tmp_path) as pipe:
            consumer = ConsumerSettings(
                **{**pipe.settings.consumer.model_dump(), "audit_role_id": AUDIT}
            )
            pipe.settings = pipe.settings.model_copy(update={"consumer": consumer})
            async with pipe.runner() as runner:
                capture.sql(registration(1, ALICE, "BSC5102"))
                await pipe.sync(runner)
                assert roles(pipe, ALICE, "BSC5102") == {STUDENT}
                capture.sql("UPDATE TRANSCRIPTDETAIL SET FINAL_GRADE = 'AU'")
                await pipe.sync(runner)
                assert roles(pipe, ALICE, "BSC5102") == {AUDIT}
                capture.sql("UPDATE TRANSCRIPTDETAIL SET FINAL_GRADE = NULL")
                await pipe.sync(runner)
                assert roles(pipe, ALICE, "BSC5102") == {STUDENT}
