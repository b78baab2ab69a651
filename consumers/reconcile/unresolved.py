"""The reconcile's unresolved persons: no single Moodle account, never acted on.

A person without exactly one account gets no desired state, so enrolments that
may be theirs would look "absent from the snapshot": ``UnresolvedPersons``
knows which accounts may belong to whom (an ``Ambiguous`` person's ids, a
roster entry carrying their transformed id) so the plan keeps those, and lists
the persons with the drops it withheld.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.identity import UserField
from consumers.ports import RosterEntry
from consumers.reconcile.model import UnresolvedPerson

__all__ = ["Unresolved", "UnresolvedPersons"]


@dataclass(slots=True)
class Unresolved:
    """One person without a single Moodle account, as the plan learns about them."""

    people_code_id: str
    reason: str
    courses: tuple[str, ...] = ()
    kept: list[str] = field(default_factory=list)

    def listed(self) -> UnresolvedPerson:
        """The person as the plan lists them, with the drops withheld."""
        reason = self.reason
        if self.kept:
            reason += "; not dropped (may be theirs): " + ", ".join(self.kept)
        return UnresolvedPerson(self.people_code_id, reason, self.courses)


@dataclass(slots=True)
class UnresolvedPersons:
    """The unresolved persons, and which Moodle accounts may be theirs."""

    user_field: UserField
    persons: dict[str, Unresolved] = field(default_factory=dict)
    by_userid: dict[int, str] = field(default_factory=dict)
    by_value: dict[str, str] = field(default_factory=dict)

    def owner(self, userid: int, held: RosterEntry | None) -> str | None:
        """The unresolved person whose account ``userid`` may be, if any."""
        if userid in self.by_userid:
            return self.by_userid[userid]
        value = _field_value(held, self.user_field)
        return self.by_value.get(value) if value else None

    def keep(self, person: str | None, course: str, userid: int) -> None:
        """Record that a drop was withheld there (it may be the person's enrolment)."""
        if person is not None:
            self.persons[person].kept.append(f"{course} (user {userid})")

    def listed(self) -> list[UnresolvedPerson]:
        """Persons PowerCampus enrols somewhere, or whose enrolments were kept."""
        return [
            person.listed()
            for _, person in sorted(self.persons.items())
            if person.courses or person.kept
        ]


def _field_value(held: RosterEntry | None, user_field: UserField) -> str | None:
    # Rosters carry idnumber and username; other fields are matched by user id only.
    if held is None:
        return None
    if user_field == "idnumber":
        return held.idnumber
    if user_field == "username":
        return held.username
    return None
