"""What the consumer decides and does: desired enrolments, Moodle actions, the ledger.

The decision layer (``consumers.decisions``) turns an ``EnrolmentEvent`` into
``DesiredEnrolment`` values (what PowerCampus says Moodle should hold), then into
at most one ``MoodleAction`` per (course, user) given what Moodle holds (as the
ownership ledger records it, or as read from Moodle when the ledger is unsure).
``MoodleAction`` is a closed union discriminated by ``kind``, in the registrar's
words (enrol, drop by suspending / removing the role / unenrolling, restore,
change role); the Moodle adapter owns the translation to web-service calls and
matches on it exhaustively.

``LedgerEntry`` is the ownership ledger's record of one (course, user) pair the
consumer has written to. It lives here, not in the decision module, because it
travels on the ledger topic.

Roles per source: a person can hold a role in a course from us as a student
(TRANSCRIPTDETAIL) and as an instructor (SECTIONPER), even both in one course.
The enrolment is one in Moodle whatever the roles, so the ledger keeps **one
entry per (course, user)** recording the role of ours for each source
(``LedgerEntry.roles``), and a decision covers every source of the pair at once:
at most one action per pair, never a second enrolment (and its welcome
message) for a second role. Entries written before instructors have no
``roles``: they read as ``{"student": roleid}``. An action assigns or
unassigns several roles when several sources change together
(``also_roleids``); roles that are not ours are never unassigned.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.events import TermKey

RoleSource = Literal["student", "instructor"]
"""Why we hold a role in a course: a registration (student or audit role) or
teaching a section (instructor role)."""

ROLE_SOURCES: tuple[RoleSource, ...] = ("student", "instructor")

LedgerStatus = Literal["active", "suspended", "role_removed", "unenrolled", "pending"]
"""The state we last put the enrolment in.

``active``: enrolled, not suspended, holding every role of ours (``roles``).
``suspended``: the enrolment's status is suspended (roles kept).
``role_removed``: still enrolled but every role of ours was taken away (a drop
under ``drop_action = "remove_role"``; ``roles`` then names what was removed).
``unenrolled``: no enrolment. ``pending`` is only read, never written: entries of
earlier versions wrote it before a new enrolment was sent; it is read as an
``active`` entry whose outcome is unknown (``uncertain``)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CourseRef(_Frozen):
    """A Moodle course as the mapping file names it."""

    id: int = Field(description="Moodle course id (the mapping entry's `id`).")
    shortname: str = Field(description="Moodle course shortname (the mapping key).")


class DesiredEnrolment(_Frozen):
    """What PowerCampus says one person's enrolment in one Moodle course should be."""

    course: CourseRef = Field(description="The Moodle course decided about.")
    people_code_id: str = Field(description="PEOPLE_CODE_ID of the person.")
    term: TermKey = Field(description="The academic term the decision was made for.")
    active: bool = Field(
        description="True when some role is wanted there: a registration mapped "
        "to the course is enrolled under the policy's predicate, or the person "
        "teaches a section feeding it."
    )
    role_id: int = Field(
        description="The main role to hold: the student side's (the audit role when "
        "every enrolled registration there carries the audit grade, else the "
        "student role), else the instructor role; the student role when none."
    )
    roles: dict[RoleSource, int] | None = Field(
        default=None,
        description="The role each source wants held; None: the student side only, "
        "role_id when active.",
    )
    decided: tuple[RoleSource, ...] = Field(
        default=("student",),
        description="The sources the event speaks for; a role of ours from another "
        "source is left as it is (e.g. an event of a source not tracking SECTIONPER).",
    )
    reason: str = Field(
        description="Short human explanation, e.g. 'enrolled in COUN6552/02'."
    )
    term_withdrawal: bool = Field(
        default=False,
        description="Registered ('A') but not enrolled because the person is "
        "separated from the term (ACADEMIC.ENROLL_SEPARATION).",
    )
    groups: tuple[str, ...] | None = Field(
        default=None,
        description="The section groups (their idnumbers, the sections' keys) the "
        "person belongs in as a student of this course; None: the course has no "
        "section groups (off, or fed by one section).",
    )
    timestart: int = Field(
        default=0,
        description="Enrolment start (Unix s) from the mapping's dates; 0: none.",
    )
    timeend: int = Field(
        default=0,
        description="Enrolment end (Unix s) from the mapping's dates; 0: none.",
    )

    def wanted(self) -> dict[RoleSource, int]:
        """The role each decided source wants held (empty: nothing wanted)."""
        if self.roles is not None:
            return dict(self.roles)
        return {"student": self.role_id} if self.active else {}


_JOIN = "Section groups of ours to add the user to, after the action's own calls."
_LEAVE = "Section groups of ours to take the user out of, after joining."


class _PairAction(_Frozen):
    courseid: int = Field(description="Moodle course id.")
    userid: int = Field(description="Moodle user id.")
    join_groupids: tuple[int, ...] = Field(default=(), description=_JOIN)
    leave_groupids: tuple[int, ...] = Field(default=(), description=_LEAVE)

    def key(self) -> tuple[int, int]:
        """The (courseid, userid) pair the action is about."""
        return (self.courseid, self.userid)


_ALSO = "Further roles, when several sources change together (student and instructor)."


class EnrolAction(_PairAction):
    """Create the enrolment, active, with ``roleid`` (Moodle welcomes the student).

    Planned only where Moodle holds no enrolment we know of, or one that is not
    ours (a teacher's manual enrolment, which it then takes over)."""

    kind: Literal["enrol"] = Field(default="enrol", description="Union tag.")
    roleid: int = Field(description="Role to assign (added to any role already held).")
    also_roleids: tuple[int, ...] = Field(default=(), description=_ALSO)
    timestart: int = Field(default=0, description="Enrolment start (Unix s); 0: none.")
    timeend: int = Field(default=0, description="Enrolment end (Unix s); 0: none.")


class ReactivateAction(_PairAction):
    """Make a suspended enrolment of ours active again, holding ``roleid``."""

    kind: Literal["reactivate"] = Field(default="reactivate", description="Union tag.")
    roleid: int = Field(description="Role the enrolment must hold once active.")
    previous_roleid: int | None = Field(
        default=None,
        description="The role we assigned before, removed when it differs.",
    )
    also_roleids: tuple[int, ...] = Field(default=(), description=_ALSO)
    also_previous_roleids: tuple[int, ...] = Field(
        default=(), description="Further roles of ours to remove."
    )
    timestart: int = Field(
        default=0, description="Enrolment start, sent again when re-enrolling."
    )
    timeend: int = Field(default=0, description="Enrolment end, sent again likewise.")


class ChangeRoleAction(_PairAction):
    """Give an active enrolment of ours ``roleid`` and take ``previous_roleid`` away."""

    kind: Literal["change_role"] = Field(
        default="change_role", description="Union tag."
    )
    roleid: int = Field(description="The role to hold from now on.")
    previous_roleid: int = Field(description="The role we assigned before.")
    also_roleids: tuple[int, ...] = Field(default=(), description=_ALSO)
    also_previous_roleids: tuple[int, ...] = Field(
        default=(), description="Further roles of ours to remove."
    )


class RestoreRoleAction(_PairAction):
    """Assign roles to an active enrolment of ours (no welcome): a drop made by
    removing the role undone, or a second role (a student who starts teaching)."""

    kind: Literal["restore_role"] = Field(
        default="restore_role", description="Union tag."
    )
    roleid: int = Field(description="The role to assign.")
    also_roleids: tuple[int, ...] = Field(default=(), description=_ALSO)


class RemoveRoleAction(_PairAction):
    """A drop that keeps the enrolment and takes our role away (no welcome message).

    Also the drop of one source while another keeps the enrolment (a student who
    still teaches there): only that source's role goes.
    """

    kind: Literal["remove_role"] = Field(
        default="remove_role", description="Union tag."
    )
    roleid: int = Field(description="The role we assigned, now removed.")
    also_roleids: tuple[int, ...] = Field(default=(), description=_ALSO)


class SuspendAction(_PairAction):
    """A drop that suspends the enrolment: grades, roles and groups are kept."""

    kind: Literal["suspend"] = Field(default="suspend", description="Union tag.")
    roleid: int = Field(description="The role the enrolment holds (kept).")
    also_roleids: tuple[int, ...] = Field(default=(), description=_ALSO)


class UnenrolAction(_PairAction):
    """A drop that removes the enrolment, its roles and groups (grades may go too)."""

    kind: Literal["unenrol"] = Field(default="unenrol", description="Union tag.")


class RegroupAction(_PairAction):
    """Only section groups change (a swap between two sections of one course, a
    group repaired): members added, then removed; the enrolment is not touched."""

    kind: Literal["regroup"] = Field(default="regroup", description="Union tag.")


MoodleAction = Annotated[
    EnrolAction
    | ReactivateAction
    | ChangeRoleAction
    | RestoreRoleAction
    | RemoveRoleAction
    | SuspendAction
    | UnenrolAction
    | RegroupAction,
    Field(discriminator="kind"),
]
"""The closed set of changes the consumer makes in Moodle."""

MoodleActionKind = Literal[
    "enrol",
    "reactivate",
    "change_role",
    "restore_role",
    "remove_role",
    "suspend",
    "unenrol",
    "regroup",
]
"""The ``kind`` tags of ``MoodleAction``."""

DROP_KINDS: frozenset[MoodleActionKind] = frozenset(
    {"remove_role", "suspend", "unenrol"}
)
"""The kinds that take a student out of a course (what the mass-drop guard counts)."""

MOODLE_ACTION: TypeAdapter[
    EnrolAction
    | ReactivateAction
    | ChangeRoleAction
    | RestoreRoleAction
    | RemoveRoleAction
    | SuspendAction
    | UnenrolAction
    | RegroupAction
] = TypeAdapter(MoodleAction)
"""Validates and serialises a ``MoodleAction`` (``MOODLE_ACTION.validate_json``)."""


class LedgerEntry(_Frozen):
    """The ownership ledger's view of one (course, user): what we last did there.

    Written by the consumer for every enrolment it creates or changes: first as
    an *intent* (``uncertain``) before the call is sent, then as the outcome once
    Moodle answered. No entry means the enrolment, if Moodle has one, is not ours
    and is never touched.
    """

    courseid: int = Field(description="Moodle course id.")
    userid: int = Field(description="Moodle user id.")
    roleid: int = Field(
        description="The role we last assigned (the main one: the student side's "
        "when we hold one there)."
    )
    roles: dict[RoleSource, int] | None = Field(
        default=None,
        description="Every role of ours there, per source; None (entries written "
        "before instructors): the student role ``roleid``.",
    )
    status: LedgerStatus = Field(description="The state we last put it in.")
    event_id: str = Field(description="The event whose decision wrote this entry.")
    state_version: int = Field(
        description="That event's state_version; older events are not applied over it."
    )
    owned: bool = Field(
        default=True,
        description="False records an enrolment seen but not created by us "
        "(e.g. a teacher's); it is never suspended or unenrolled.",
    )
    uncertain: bool = Field(
        default=False,
        description="A call that would put the enrolment in `status` was sent and "
        "its outcome is unknown (reply lost, timeout, process killed): the next "
        "decision reads what Moodle holds before it writes or skips.",
    )
    previous_roleid: int | None = Field(
        default=None,
        description="On an uncertain role change: the role we held before, which "
        "Moodle may still hold.",
    )
    people_code_id: str | None = Field(
        default=None,
        description="The person whose enrolment this is (PEOPLE_CODE_ID), when known.",
    )
    sent_at_ms: int | None = Field(
        default=None,
        description="On an uncertain entry: when its call was sent (Unix ms).",
    )
    late_roleids: tuple[int, ...] = Field(
        default=(),
        description="Roles a call whose answer was lost may still assign when "
        "Moodle applies it late: taken away again if Moodle holds them, until the "
        "recheck.",
    )
    recheck_at_ms: int | None = Field(
        default=None,
        description="Read Moodle again at this time (Unix ms): a call whose answer "
        "was lost may still be applied until then (a late write), after the "
        "decision that read Moodle back.",
    )
    previous_roles: dict[RoleSource, int] | None = Field(
        default=None,
        description="On an uncertain role change: the roles of ours per source "
        "before it, which Moodle may still hold (None: ``previous_roleid``, "
        "student side).",
    )
    groups: tuple[int, ...] | None = Field(
        default=None,
        description="The section groups of ours (Moodle group ids) the user is in "
        "there, as we last put them; None: none (entries written before groups).",
    )

    def normalised(self) -> LedgerEntry:
        """The entry with legacy ``pending`` read as an uncertain ``active``."""
        if self.status == "pending":
            return self.model_copy(update={"status": "active", "uncertain": True})
        return self

    def our_roles(self) -> dict[RoleSource, int]:
        """The role of ours per source (a legacy entry: the student role)."""
        if self.roles is not None:
            return dict(self.roles)
        return {"student": self.roleid}

    def leftover_roles(self) -> dict[RoleSource, int]:
        """Roles of ours from before an unfinished role change, per source."""
        if self.previous_roles is not None:
            return dict(self.previous_roles)
        if self.previous_roleid is None:
            return {}
        return {"student": self.previous_roleid}


__all__ = [
    "DROP_KINDS",
    "MOODLE_ACTION",
    "ROLE_SOURCES",
    "ChangeRoleAction",
    "CourseRef",
    "DesiredEnrolment",
    "EnrolAction",
    "LedgerEntry",
    "LedgerStatus",
    "MoodleAction",
    "MoodleActionKind",
    "ReactivateAction",
    "RegroupAction",
    "RemoveRoleAction",
    "RestoreRoleAction",
    "RoleSource",
    "SuspendAction",
    "UnenrolAction",
]
