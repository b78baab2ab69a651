"""What one LMB message says, as the IMS Enterprise 1.1 parser reads it (no XML here).

The parser (``connectors/lmb/ims.py``) turns a POSTed document into an
``ImsMessage``: its ``person``, ``group`` and ``membership`` elements in document
order, one ``ImsMember`` per ``member`` (a membership element may carry several),
and the elements it could not read with the reason (``problems``), so the rest
of the message is still applied and nothing is lost silently.

Vocabulary (IMS Enterprise 1.1, as enrol_lmb and SHEBanG read it): ``recstatus``
1 add, 2 update, 3 delete (absent: add); a member's ``idtype`` 1 is a person, 2 a
group (a section in a cross-list); ``roletype`` 01 learner, 02 instructor (03-08
are other roles); ``status`` 1 active, 0 inactive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RecStatus = Literal["add", "update", "delete"]
GroupKind = Literal["term", "section", "crosslist", "other"]
MemberKind = Literal["person", "group"]

LEARNER = "01"
INSTRUCTOR = "02"


@dataclass(frozen=True, slots=True)
class ImsPerson:
    """A ``person`` element: who they are and how Moodle should name them."""

    sourcedid: str
    recstatus: RecStatus = "add"
    given: str | None = None
    family: str | None = None
    nickname: str | None = None
    email: str | None = None
    #: ``userid`` values by ``useridtype`` ("Logon ID", "SCTID", "Email ID", ...);
    #: their ``password`` attributes are never read.
    userids: tuple[tuple[str, str], ...] = ()

    def userid(self, useridtype: str) -> str | None:
        """The ``userid`` of that type (compared case-insensitively), if sent."""
        wanted = useridtype.casefold()
        return next((v for t, v in self.userids if t.casefold() == wanted), None)


@dataclass(frozen=True, slots=True)
class ImsGroup:
    """A ``group`` element: a term, a section (CRN.TERM), a cross-list, or another kind."""

    sourcedid: str
    kind: GroupKind
    typevalue: str
    recstatus: RecStatus = "add"
    short: str | None = None
    long: str | None = None
    full: str | None = None
    #: The ``relationship`` ids labelled Term and Course (a section's).
    term_id: str | None = None
    course_id: str | None = None


@dataclass(frozen=True, slots=True)
class ImsMember:
    """One ``member`` of a ``membership``: a person in a section, or a section in a cross-list."""

    group: str
    member: str
    kind: MemberKind
    roletype: str
    active: bool
    recstatus: RecStatus = "add"

    @property
    def deleted(self) -> bool:
        """``role@recstatus = 3``: the membership is gone, whatever its status says."""
        return self.recstatus == "delete"


ImsObject = ImsPerson | ImsGroup | ImsMember


@dataclass(frozen=True, slots=True)
class ImsMessage:
    """Every object of one message, in document order, and what could not be read."""

    objects: tuple[ImsObject, ...]
    problems: tuple[str, ...] = ()
