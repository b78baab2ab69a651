"""Conduit's rows, pure: the actions translated, the files composed and read back."""

from __future__ import annotations

import pytest

from connectors.conduit.files import (
    ENROLMENTS,
    USERS,
    ConduitFormat,
    ConduitLayout,
    ForeignFile,
)
from connectors.conduit.identity import conduit_userid
from connectors.conduit.translate import RoleRow, rows_for
from consumers.decisions import Held
from consumers.outbox import merge_rows
from schemas.actions import (
    ChangeRoleAction,
    EnrolAction,
    MoodleAction,
    ReactivateAction,
    RemoveRoleAction,
    RestoreRoleAction,
    SuspendAction,
    UnenrolAction,
)

STUDENT, TEACHER, EDITING, AUDIT = 5, 4, 3, 9
PAIR = {"courseid": 10, "userid": -7}


def held(*roles: int, active: bool = True) -> Held:
    return Held(active=active, roleids=frozenset(roles))


class TestRowsFor:
    """Each action becomes drops of what it takes away, then adds."""

    @pytest.mark.parametrize(
        ("action", "before", "rows", "after"),
        [
            (
                EnrolAction(**PAIR, roleid=STUDENT),
                None,
                [("add", STUDENT)],
                held(STUDENT),
            ),
            (
                EnrolAction(**PAIR, roleid=STUDENT, also_roleids=(EDITING,)),
                None,
                [("add", STUDENT), ("add", EDITING)],
                held(STUDENT, EDITING),
            ),
            (
                RestoreRoleAction(**PAIR, roleid=STUDENT),
                held(),
                [("add", STUDENT)],
                held(STUDENT),
            ),
            (
                RemoveRoleAction(**PAIR, roleid=STUDENT),
                held(STUDENT),
                [("drop", STUDENT)],
                held(),
            ),
            (
                RemoveRoleAction(**PAIR, roleid=STUDENT),
                held(STUDENT, EDITING),
                [("drop", STUDENT), ("add", EDITING)],
                held(EDITING),
            ),
            (
                ChangeRoleAction(**PAIR, roleid=AUDIT, previous_roleid=STUDENT),
                held(STUDENT),
                [("drop", STUDENT), ("add", AUDIT)],
                held(AUDIT),
            ),
            (
                ReactivateAction(**PAIR, roleid=STUDENT, previous_roleid=STUDENT),
                held(STUDENT, active=False),
                [("add", STUDENT)],
                held(STUDENT),
            ),
            (
                SuspendAction(**PAIR, roleid=STUDENT),
                held(STUDENT),
                [("drop", STUDENT)],
                held(STUDENT, active=False),
            ),
            (
                UnenrolAction(**PAIR),
                held(STUDENT, EDITING),
                [("drop", EDITING), ("drop", STUDENT)],
                None,
            ),
            (UnenrolAction(**PAIR), None, [], None),
        ],
    )
    def test_rows_and_what_the_site_holds_after(
        self,
        action: MoodleAction,
        before: Held | None,
        rows: list[RoleRow],
        after: Held | None,
    ) -> None:
        """The rows follow the table in connectors/conduit/translate.py."""
        assert rows_for(action, before) == (rows, after)


def layout(**changes: object) -> ConduitLayout:
    return ConduitLayout(**changes)  # type: ignore[arg-type]


class TestConduitFormat:
    """The files have the configured columns, one row per key, drops first."""

    def test_default_header_is_the_seeds(self) -> None:
        """campus-enrollment-sync's header: action,shortname,idnumber,role."""
        fmt = ConduitFormat(ConduitLayout())
        assert fmt.compose(ENROLMENTS, []) == b"action,shortname,idnumber,role\n"
        assert fmt.remote_name(ENROLMENTS) == "enrollments.csv"

    def test_configured_columns_and_words(self) -> None:
        """Headings, their order and the action words come from the layout."""
        fmt = ConduitFormat(
            layout(
                enrolment_columns=(
                    ("shortname", "course"),
                    ("idnumber", "user_idnumber"),
                    ("role", "role_shortname"),
                    ("action", "operation"),
                ),
                add="create",
                drop="delete",
            )
        )
        row = fmt.enrolment(add=False, shortname="BSC5102", idnumber="001", role="x")
        assert fmt.compose(ENROLMENTS, [row]).decode().splitlines() == [
            "course,user_idnumber,role_shortname,operation",
            "BSC5102,001,x,delete",
        ]

    def test_latest_row_per_key_and_drops_first(self) -> None:
        """A later state replaces an earlier one; drops precede adds."""
        fmt = ConduitFormat(ConduitLayout())
        rows = [
            fmt.enrolment(add=True, shortname="A", idnumber="1", role="student"),
            fmt.enrolment(add=True, shortname="A", idnumber="2", role="student"),
            fmt.enrolment(add=False, shortname="A", idnumber="1", role="student"),
            fmt.enrolment(add=False, shortname="B", idnumber="2", role="teacher"),
        ]
        assert fmt.compose(ENROLMENTS, rows).decode().splitlines() == [
            "action,shortname,idnumber,role",
            "drop,A,1,student",
            "drop,B,2,teacher",
            "add,A,2,student",
        ]

    def test_users_keep_create_and_update_creates_first(self) -> None:
        """An update does not replace the create of the same person."""
        fmt = ConduitFormat(ConduitLayout())
        update = fmt.row(USERS, {"action": "update", "idnumber": "1", "email": "b"})
        create = fmt.row(USERS, {"action": "create", "idnumber": "1", "email": "a"})
        lines = fmt.compose(USERS, [update, create]).decode().splitlines()
        assert [line.split(",")[0] for line in lines] == ["action", "create", "update"]

    def test_values_needing_quotes_read_back(self) -> None:
        """A shortname with a comma is quoted and parsed back whole."""
        fmt = ConduitFormat(ConduitLayout())
        row = fmt.enrolment(add=True, shortname='A,"B"', idnumber="1", role="student")
        assert fmt.parse(ENROLMENTS, fmt.compose(ENROLMENTS, [row])) == [row]

    @pytest.mark.parametrize(
        "content",
        [
            b"",
            b"user,course\n1,2\n",
            b"action,shortname,idnumber,role\nadd,A\n",
            b"\xff",
        ],
    )
    def test_a_file_not_ours_is_refused(self, content: bytes) -> None:
        """Another header, a short row or bytes that are not UTF-8: ForeignFile."""
        with pytest.raises(ForeignFile, match=r"enrollments\.csv"):
            ConduitFormat(ConduitLayout()).parse(ENROLMENTS, content)


class TestMergeRows:
    """Appending keeps one row per key, where its latest version came."""

    def test_latest_wins_in_order(self) -> None:
        """Old rows, then new ones; a key seen again moves to its latest place."""
        fmt = ConduitFormat(ConduitLayout())
        a_add = fmt.enrolment(add=True, shortname="A", idnumber="1", role="s")
        b_add = fmt.enrolment(add=True, shortname="B", idnumber="1", role="s")
        a_drop = fmt.enrolment(add=False, shortname="A", idnumber="1", role="s")
        assert merge_rows([a_add, b_add], [a_drop]) == [b_add, a_drop]


class TestConduitUserid:
    """The ledger's number for a person is stable, negative and distinct."""

    def test_stable_and_negative(self) -> None:
        """The same idnumber gives the same number; never a real Moodle id."""
        assert conduit_userid("000123") == conduit_userid("000123") < 0
        assert conduit_userid("000123") != conduit_userid("00123")
