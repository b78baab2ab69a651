"""Persons on a Conduit site: addressed by idnumber, keyed in the ledger by a number from it.

Conduit finds a person by the idnumber in the file; enrolstream never learns the
Moodle user id. The ledger and the outbox key a person by ``conduit_userid``: a
negative number derived from the idnumber (SHA-256, 56 bits), the same on every
run and machine, and never a real Moodle id (those are positive). Two idnumbers
with one number (about one chance in 10^10 among a million people) are reported
as ambiguous and parked, never mixed up.

With ``[accounts]`` on, Moodle's web services say who has no account yet
(``lookup``): such a person is ``Missing`` unless Conduit was already asked to
create them (the accounts book), and provisioning then asks Conduit to create one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from consumers.identity import (
    Ambiguous,
    Found,
    Missing,
    Resolution,
    Transform,
    UserField,
    transform_people_code_id,
)
from consumers.ports import Identities

__all__ = ["ConduitIdentities", "conduit_userid"]


def conduit_userid(idnumber: str) -> int:
    """The ledger's number for the person whose idnumber this is (negative)."""
    digest = hashlib.sha256(idnumber.encode()).digest()
    return -(int.from_bytes(digest[:7], "big") + 1)


class ConduitIdentities:
    """``consumers.ports.Identities`` for a Conduit site."""

    def __init__(
        self,
        transform: Transform,
        *,
        lookup: Identities | None = None,
        asked_to_create: Callable[[str], bool] = lambda _: False,
    ) -> None:
        """``lookup``: Moodle's own resolver (web services), to know who has no
        account; ``asked_to_create``: whether Conduit was asked to create the
        person's account already."""
        self.transform: Transform = transform
        #: The Moodle field Conduit finds people by (its enrolment file's column).
        self.field: UserField = "idnumber"
        #: Full names are not known from the files (the reconcile's reports).
        self.fullnames: dict[int, str] = {}
        self.lookup = lookup
        self.asked_to_create = asked_to_create
        #: The idnumber behind each number handed out (this process).
        self.idnumbers: dict[int, str] = {}

    async def resolve(self, people_code_ids: Iterable[str]) -> dict[str, Resolution]:
        """A resolution for every id given (see the module's docstring)."""
        persons = list(dict.fromkeys(people_code_ids))
        result: dict[str, Resolution] = {}
        for person in persons:
            idnumber = transform_people_code_id(person, self.transform)
            if not idnumber:
                result[person] = Missing(
                    reason="empty idnumber: nothing to put in Conduit's file",
                    code="empty_id",
                )
                continue
            userid = conduit_userid(idnumber)
            known = self.idnumbers.setdefault(userid, idnumber)
            if known != idnumber:
                result[person] = Ambiguous(
                    userids=(userid,),
                    reason=f"idnumbers {known!r} and {idnumber!r} share the ledger "
                    "number: rename one, or ask for a wider number",
                )
                continue
            result[person] = Found(userid)
        if self.lookup is not None:
            await self._mark_missing(result)
        return result

    async def _mark_missing(self, result: dict[str, Resolution]) -> None:
        wanted = [p for p, r in result.items() if isinstance(r, Found)]
        if not wanted:
            return
        seen = await self.lookup.resolve(wanted) if self.lookup else {}
        for person in wanted:
            moodle = seen.get(person)
            missing = isinstance(moodle, Missing) and not self.asked_to_create(person)
            if moodle is not None and (missing or isinstance(moodle, Ambiguous)):
                result[person] = moodle

    def forget(self, people_code_id: str) -> None:
        """Nothing is cached that Moodle could contradict."""
        if self.lookup is not None:
            self.lookup.forget(people_code_id)
