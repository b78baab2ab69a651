"""The accounts book's record: a Moodle account enrolstream created, and what it set.

One entry per person (key: PEOPLE_CODE_ID), on a compacted topic, written only
for accounts enrolstream itself created: names and e-mail changes in
PowerCampus update those accounts and no others. Like the ledger, the intent is
written before the call (``uncertain``) and the outcome after it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AccountEntry(BaseModel):
    """One Moodle account enrolstream created (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    people_code_id: str = Field(description="PEOPLE_CODE_ID of the person.")
    userid: int | None = Field(
        default=None,
        description="The Moodle user id; None while the creation's outcome is unknown.",
    )
    username: str = Field(description="The username it was created with.")
    idnumber: str = Field(description="The idnumber it was created with.")
    auth: str = Field(description="The authentication plugin it was created with.")
    firstname: str = Field(description="The first name we last set.")
    lastname: str = Field(description="The last name we last set.")
    middlename: str = Field(default="", description="The middle name we last set.")
    email: str = Field(description="The e-mail address we last set.")
    event_id: str = Field(description="The event whose decision wrote this entry.")
    state_version: int = Field(
        description="That event's state_version; older events do not update it."
    )
    uncertain: bool = Field(
        default=False,
        description="A create or update was sent and its outcome is unknown: the "
        "next decision reads the account before it writes.",
    )


__all__ = ["AccountEntry"]
