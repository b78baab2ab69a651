"""The LMB source's own records: what it keeps of Banner's people and groups, and dead letters.

Banner's LMB sends *transitions* (this membership is now active, that one was
deleted), while the consumers act on *state* (everything the person holds in a
term). The LMB source keeps each person's and each group's current state on a
compacted topic (``lmb.state_topic``), keyed ``person:<sourcedid>`` and
``group:<sourcedid>``, and publishes a person's whole term state on every change.
``applied`` names the last messages applied to a record, so a message LMB sends
again (its answer was lost) is recognised and not applied twice.

A message that cannot be applied (not XML, hostile XML, an object that cannot be
read or placed) is answered 200 all the same, so LMB keeps sending, and written
to ``lmb.dead_letter_topic`` as an ``LmbDeadLetter`` with the message verbatim
and every reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import PersonDetails

PERSON_PREFIX = "person:"
GROUP_PREFIX = "group:"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LmbMembership(_Frozen):
    """One membership of the person, as the last message about it left it."""

    section: str = Field(description="The section's sourcedid, CRN.TERM.")
    crn: str = Field(description="The section's CRN (its EVENT_ID in events).")
    term: str = Field(description="The section's Banner term code, e.g. 201510.")
    roletype: str = Field(
        description="IMS roletype: 01 learner, 02 instructor (03-08 are kept, not applied)."
    )
    active: bool = Field(description="role/status: 1 active, 0 inactive.")


class LmbPersonRecord(_Frozen):
    """A person's state (schema version 1), keyed ``person:<sourcedid>``."""

    schema_version: Literal[1] = Field(default=1, description="Record version.")
    people_code_id: str = Field(description="The person's sourcedid id.")
    details: PersonDetails | None = Field(
        default=None, description="From the last person message; None: none received."
    )
    deleted: bool = Field(
        default=False, description="A person message with recstatus 3 was received."
    )
    memberships: tuple[LmbMembership, ...] = Field(
        default=(), description="Every membership not deleted, in arrival order."
    )
    state_version: int = Field(
        default=0, description="Increases with every message applied to the person."
    )
    applied: tuple[str, ...] = Field(
        default=(), description="Keys of the last messages applied (newest last)."
    )


class LmbGroupRecord(_Frozen):
    """A group's state (schema version 1), keyed ``group:<sourcedid>``."""

    schema_version: Literal[1] = Field(default=1, description="Record version.")
    sourcedid: str = Field(description="The group's sourcedid id.")
    kind: Literal["term", "section", "crosslist", "other"] = Field(
        description="grouptype/typevalue: Term, CourseSection, CrossListedSection."
    )
    title: str | None = Field(default=None, description="description/long (or short).")
    term: str | None = Field(
        default=None, description="Banner term code (a section's or cross-list's)."
    )
    sections: tuple[str, ...] = Field(
        default=(),
        description="A cross-list's member sections (CRN.TERM) whose status is 1.",
    )
    deleted: bool = Field(default=False, description="recstatus 3 was received.")
    applied: tuple[str, ...] = Field(
        default=(), description="Keys of the last messages applied (newest last)."
    )


class LmbDeadLetter(_Frozen):
    """A message, or some of its objects, that could not be applied (schema version 1)."""

    schema_version: Literal[1] = Field(default=1, description="Record version.")
    message_key: str = Field(
        description="sha256 of the RDI message id and the body: the message's identity."
    )
    message_id: str | None = Field(default=None, description="RDI-Message-Id header.")
    seqno: str | None = Field(default=None, description="RDI-Message-SeqNo header.")
    error_type: str = Field(description="The typed error's class name.")
    reasons: tuple[str, ...] = Field(description="Why, one line per problem.")
    body: str = Field(
        description="The message as received (UTF-8, undecodable bytes replaced)."
    )
    received_at: datetime = Field(description="When the endpoint received it.")
