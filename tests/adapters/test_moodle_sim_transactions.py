"""Simulator transactions: a failed batch leaves a large site exactly as a backup shows it.

The undo log replaced a deep copy of every table per call; these tests hold it
to the deep copy's guarantee. Each operation runs on a site of a few thousand
enrolments; whenever one fails, the site must equal the snapshot (a deep copy)
taken just before it, indexes, counters and messages included. After every
operation the indexes must agree with the tables they are derived from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.moodle_sim.api import CallContext
from sandbox.moodle_sim.errors import MoodleError
from sandbox.moodle_sim.protocol import parse_form
from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState, StateSnapshot
from sandbox.moodle_sim.users import create_users
from sandbox.moodle_sim.ws_enrol import enrol_users, unenrol_users

NOW = 1_800_000_000
COURSES, USERS, PER_COURSE = 40, 300, 30
MISSING_USER = 999_999


class Boom(Exception):
    """Raised by a test to abort a transaction."""


@dataclass
class Site:
    """A prepared site, its backup and a web-service call context."""

    state: MoodleState
    backup: StateSnapshot
    ctx: CallContext
    courses: list[int]
    users: list[int]


def _build_site() -> Site:
    state = MoodleState(clock=lambda: NOW)
    users = [state.add_user(f"u{n}", idnumber=f"P{n}") for n in range(USERS)]
    courses = [state.add_course(f"C{n}", f"Course {n}") for n in range(COURSES)]
    for c, courseid in enumerate(courses):
        for k in range(PER_COURSE):
            userid = users[(c * 7 + k) % USERS]
            role = EDITING_TEACHER if k == 0 else 5
            state.enrol(courseid, userid, role, status=1 if k % 9 == 4 else 0)
    state.set_manual_instance(courses[-1], "disabled")
    token = state.add_token("t" * 32, 3)
    ctx = CallContext(state, token, "http://sim")
    return Site(state, state.snapshot(), ctx, courses, users)


_SITE = _build_site()


@pytest.fixture(name="site")
def _site() -> Site:
    _SITE.state.restore(_SITE.backup)
    return _SITE


def _check_indexes(state: MoodleState) -> None:
    t = state._t
    user_courses: dict[int, set[int]] = {}
    teachers: dict[int, set[int]] = {}
    for courseid, rows in t.enrolments.items():
        for userid in rows:
            user_courses.setdefault(userid, set()).add(courseid)
    for courseid, holders in t.roles.items():
        for userid, roles in holders.items():
            if EDITING_TEACHER in roles:
                teachers.setdefault(courseid, set()).add(userid)
    assert {u: s for u, s in t.user_courses.items() if s} == user_courses
    assert {c: s for c, s in t.course_teachers.items() if s} == teachers
    for categoryid, ids in t.category_courses.items():
        assert ids == [c.id for c in state.courses() if c.categoryid == categoryid]


# An operation: (kind, rows, where the bad row goes or None, which bad row).
_ROW = st.tuples(
    st.integers(0, COURSES - 1),
    st.integers(0, USERS - 1),
    st.sampled_from([3, 4, 5]),
    st.booleans(),
)
_BAD = st.sampled_from(["missing_user", "disabled_course", "role", "guest"])
_OP = st.tuples(
    st.sampled_from(["enrol", "unenrol", "create_users", "drop_manual", "restore"]),
    st.lists(_ROW, min_size=1, max_size=25),
    st.none() | st.integers(0, 25),
    _BAD,
)


def _enrol_row(site: Site, row: tuple[int, int, int, bool]) -> dict[str, int]:
    course, user, role, suspend = row
    return {
        "roleid": role,
        "userid": site.users[user],
        "courseid": site.courses[course],
        "suspend": int(suspend),
    }


def _bad_row(site: Site, kind: str) -> dict[str, int]:
    row = {"roleid": 5, "userid": site.users[0], "courseid": site.courses[0]}
    if kind == "missing_user":
        row["userid"] = MISSING_USER
    elif kind == "disabled_course":
        row["courseid"] = site.courses[-1]
    elif kind == "role":
        row["roleid"] = 1
    else:
        row["userid"] = 1
    return row


def _run(site: Site, op: tuple[str, list[Any], int | None, str]) -> None:
    kind, rows, bad_at, bad = op
    state, ctx = site.state, site.ctx
    if kind == "enrol":
        items = [_enrol_row(site, r) for r in rows]
        if bad_at is not None:
            items.insert(min(bad_at, len(items)), _bad_row(site, bad))
        enrol_users(ctx, {"enrolments": items})
    elif kind == "unenrol":
        items = [
            {"userid": site.users[u], "courseid": site.courses[c]}
            for c, u, _, _ in rows
        ]
        if bad_at is not None:
            items.insert(
                min(bad_at, len(items)), {"userid": MISSING_USER, "courseid": 2}
            )
        unenrol_users(ctx, {"enrolments": items})
    elif kind == "create_users":
        new = [
            {
                "username": f"new{n}-{c}-{u}",
                "email": f"new{n}-{c}-{u}@example.com",
                "firstname": "N",
                "lastname": "U",
                "idnumber": "",
                "auth": "manual",
                "createpassword": True,
            }
            for n, (c, u, _, _) in enumerate(rows)
        ]
        if bad_at is not None:
            new.insert(min(bad_at, len(new)), {**new[0], "email": "dup@example.com"})
        create_users(ctx, {"users": new})
    else:
        with state.transaction():
            for course, user, role, _ in rows:
                state.enrol(site.courses[course], site.users[user], role)
            if kind == "drop_manual":
                state.set_manual_instance(site.courses[rows[0][0]], "absent")
            else:
                state.restore(site.backup)
                state.add_user("after-restore")
            if bad_at is not None:
                raise Boom


def _enrol_then_fail(state: MoodleState, course: int, user: int) -> None:
    with state.transaction():
        state.enrol(course, user, 5)
        raise Boom


def _commit_inner_then_fail(state: MoodleState) -> None:
    with state.transaction():
        with state.transaction():
            state.add_user("inner")
        raise Boom


class TestTransactions:
    """A failing batch undoes exactly its own writes, however large the site."""

    @settings(max_examples=30, deadline=None)
    @given(ops=st.lists(_OP, min_size=1, max_size=6))
    def test_failed_batch_equals_the_backup_before_it(
        self, ops: list[tuple[str, list[Any], int | None, str]]
    ) -> None:
        """After any failing call the site equals a deep copy taken just before it."""
        _SITE.state.restore(_SITE.backup)
        for op in ops:
            before = _SITE.state.snapshot()
            try:
                _run(_SITE, op)
            except (MoodleError, Boom):
                assert _SITE.state.snapshot() == before
            _check_indexes(_SITE.state)

    def test_successful_batch_is_kept(self, site: Site) -> None:
        """A batch without a bad row is applied and stays applied."""
        items = [_enrol_row(site, (0, 250, 5, False))]
        enrol_users(site.ctx, {"enrolments": items})
        assert site.state.enrolment(site.courses[0], site.users[250]) is not None

    def test_bad_last_row_undoes_welcome_messages(self, site: Site) -> None:
        """Welcome messages sent for good rows vanish when a later row fails."""
        sent = len(site.state.notifications)
        items = [
            _enrol_row(site, (0, 250, 5, False)),
            _bad_row(site, "missing_user"),
        ]
        with pytest.raises(MoodleError):
            enrol_users(site.ctx, {"enrolments": items})
        assert len(site.state.notifications) == sent
        assert site.state.enrolment(site.courses[0], site.users[250]) is None

    def test_inner_failure_undoes_only_the_inner_writes(self, site: Site) -> None:
        """A caught failure in a nested transaction keeps the outer block's writes."""
        state, course = site.state, site.courses[0]
        with state.transaction():
            state.enrol(course, site.users[250], 5)
            with pytest.raises(Boom):
                _enrol_then_fail(state, course, site.users[251])
        assert state.enrolment(course, site.users[250]) is not None
        assert state.enrolment(course, site.users[251]) is None

    def test_outer_failure_undoes_committed_inner_writes(self, site: Site) -> None:
        """An inner transaction that succeeded is still undone by its outer one."""
        before = site.state.snapshot()
        with pytest.raises(Boom):
            _commit_inner_then_fail(site.state)
        assert site.state.snapshot() == before

    def test_writes_after_a_transaction_are_not_logged(self, site: Site) -> None:
        """Once the outermost transaction ends, nothing is held for undoing."""
        with site.state.transaction():
            site.state.enrol(site.courses[0], site.users[250], 5)
        site.state.enrol(site.courses[1], site.users[250], 5)
        assert site.state._log.pending == 0


class TestParseForm:
    """The fast form parser agrees with the standard library."""

    @given(
        text=st.text(alphabet=st.sampled_from(list("ab=&+%2F5C3A9[]0 é;")), max_size=60)
    )
    def test_same_pairs_as_parse_qsl(self, text: str) -> None:
        """Any body, valid or broken, parses to parse_qsl's pairs (blank values kept)."""
        assert parse_form(text) == parse_qsl(text, keep_blank_values=True)
