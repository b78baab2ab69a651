"""What enrolstream created in Moodle's course structure: section groups and course shells.

One record per object on a compacted topic (``enrolstream.created``), written
only for objects enrolstream itself created, so only those are ever changed:
members of groups we did not create are never touched, and a course someone
else hid is never shown. As with the ledger, the intent is written before the
call (``uncertain``, no Moodle id yet) and the outcome after it; a record still
uncertain is settled by looking the object up by its idnumber.

Keys: ``group:<courseid>:<idnumber>`` and ``shell:<idnumber>``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CreatedGroup(_Frozen):
    """A section group enrolstream created in a Moodle course (schema version 1)."""

    kind: Literal["group"] = Field(default="group", description="Union tag.")
    courseid: int = Field(description="The Moodle course.")
    idnumber: str = Field(description="The group's idnumber: its section's key.")
    name: str = Field(description="The name it was created with.")
    groupid: int | None = Field(
        default=None, description="The Moodle group id; None while uncertain."
    )
    uncertain: bool = Field(
        default=False,
        description="The creation was sent and its outcome is unknown: the group "
        "is looked up by idnumber before anything else is done with it.",
    )

    def key(self) -> bytes:
        """The topic key."""
        return f"group:{self.courseid}:{self.idnumber}".encode()


class CreatedShell(_Frozen):
    """A Moodle course enrolstream created for a term (schema version 1)."""

    kind: Literal["shell"] = Field(default="shell", description="Union tag.")
    idnumber: str = Field(
        description="The course's idnumber (ties it to its sections)."
    )
    shortname: str = Field(description="The shortname it was created with.")
    term: str = Field(description="The term, YEAR/TERM.")
    courseid: int | None = Field(
        default=None, description="The Moodle course id; None while uncertain."
    )
    reveal_on: date | None = Field(
        default=None,
        description="Created hidden: the day it is to be shown (None: created visible).",
    )
    revealed: bool = Field(
        default=False,
        description="Shown by enrolstream already: never shown again (a teacher may "
        "hide it on purpose).",
    )
    uncertain: bool = Field(
        default=False, description="The creation's outcome is unknown."
    )

    def key(self) -> bytes:
        """The topic key."""
        return f"shell:{self.idnumber}".encode()


CreatedEntry = Annotated[CreatedGroup | CreatedShell, Field(discriminator="kind")]
"""One record of the created topic."""

CREATED_ENTRY: TypeAdapter[CreatedGroup | CreatedShell] = TypeAdapter(CreatedEntry)
"""Validates and serialises a record of the created topic."""

__all__ = ["CREATED_ENTRY", "CreatedEntry", "CreatedGroup", "CreatedShell"]
