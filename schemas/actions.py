"""What the consumer decides and does: desired enrolments, Moodle actions, the ledger.

The decision layer (``consumers.decisions``) turns an ``EnrolmentEvent`` into
``DesiredEnrolment`` values (what PowerCampus says Moodle should hold), then into
at most one ``MoodleAction`` per (course, user) given the ownership ledger.
``MoodleAction`` is a closed union discriminated by ``kind``; the Moodle adapter
matches on it exhaustively.

``LedgerEntry`` is the ownership ledger's record of one (course, user) pair the
consumer has enrolled, suspended or unenrolled. It lives here, not in the
decision module, because it travels on the ledger topic.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.events import TermKey

LedgerStatus = Literal["active", "suspended", "unenrolled", "pending"]
"""``pending``: written before an enrolment is sent to Moodle; whether Moodle
applied it is unknown until the entry is rewritten (it is ours either way)."""


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
        description="True when at least one registration mapped to the course is "
        "enrolled under the policy's predicate."
    )
    role_id: int = Field(
        description="Moodle role to hold: the audit role when every enrolled "
        "registration there carries the audit grade, else the student role."
    )
    reason: str = Field(
        description="Short human explanation, e.g. 'enrolled in COUN6552/02'."
    )


class EnrolAction(_Frozen):
    """``enrol_manual_enrol_users`` for one row: create, reactivate or add a role."""

    kind: Literal["enrol"] = Field(default="enrol", description="Union tag.")
    courseid: int = Field(description="Moodle course id.")
    userid: int = Field(description="Moodle user id.")
    roleid: int = Field(description="Role to assign (added to any role already held).")
    suspend: bool = Field(
        default=False,
        description="Send suspend=1. Always False from the planner; sent "
        "explicitly because a missing key reactivates a suspended enrolment.",
    )

    def key(self) -> tuple[int, int]:
        """The (courseid, userid) pair the action is about."""
        return (self.courseid, self.userid)


class SuspendAction(_Frozen):
    """``enrol_manual_enrol_users`` with suspend=1: keeps grades, roles and groups."""

    kind: Literal["suspend"] = Field(default="suspend", description="Union tag.")
    courseid: int = Field(description="Moodle course id.")
    userid: int = Field(description="Moodle user id.")
    roleid: int = Field(
        description="The role the enrolment holds (enrol_users requires one; "
        "re-sending a held role is a no-op)."
    )

    def key(self) -> tuple[int, int]:
        """The (courseid, userid) pair the action is about."""
        return (self.courseid, self.userid)


class UnenrolAction(_Frozen):
    """``enrol_manual_unenrol_users``: removes the enrolment, its roles and groups."""

    kind: Literal["unenrol"] = Field(default="unenrol", description="Union tag.")
    courseid: int = Field(description="Moodle course id.")
    userid: int = Field(description="Moodle user id.")

    def key(self) -> tuple[int, int]:
        """The (courseid, userid) pair the action is about."""
        return (self.courseid, self.userid)


MoodleAction = Annotated[
    EnrolAction | SuspendAction | UnenrolAction, Field(discriminator="kind")
]
"""The closed set of calls the consumer makes to Moodle."""

MOODLE_ACTION: TypeAdapter[EnrolAction | SuspendAction | UnenrolAction] = TypeAdapter(
    MoodleAction
)
"""Validates and serialises a ``MoodleAction`` (``MOODLE_ACTION.validate_json``)."""


class LedgerEntry(_Frozen):
    """The ownership ledger's view of one (course, user): what we last did there.

    Written by the consumer for every enrolment it creates or changes. No entry
    means the enrolment, if Moodle has one, is not ours and is never touched.
    """

    courseid: int = Field(description="Moodle course id.")
    userid: int = Field(description="Moodle user id.")
    roleid: int = Field(description="The role we last assigned.")
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


__all__ = [
    "MOODLE_ACTION",
    "CourseRef",
    "DesiredEnrolment",
    "EnrolAction",
    "LedgerEntry",
    "LedgerStatus",
    "MoodleAction",
    "SuspendAction",
    "UnenrolAction",
]
