"""An LMB message applied to the book: new records and the events to publish. Pure.

``apply_message(message, book, received)`` is the LMB source's one decision.
It takes the message's objects in document order and returns the records they
change and the enrolment events those changes call for; it reads no clock and
writes nothing (the intake publishes, then saves, then updates the book).

* A ``person`` sets the person's account details (``Logon ID`` is the username);
  one ``LMB_PERSON`` event per term they have memberships in (none before their
  first membership: that membership's event carries the details).
* A person's ``member`` (``idtype`` 1) sets one membership: ``status`` 1 active,
  0 inactive, ``role@recstatus`` 3 deletes it (whatever its status says:
  enrol_lmb lets a later ``status`` override a delete, we do not). Learners (01)
  and instructors (02) become one ``LMB_MEMBERSHIP`` event for the section's
  term, carrying the person's whole state in that term (see
  ``schemas/events.py``); other roles are kept and noted, not applied.
* Groups and cross-list members change the book only (``lmb/groups.py``).
* An object already applied to its record (its message key is among the
  record's ``applied``: LMB sent the message again) is skipped; a message whose
  every object was skipped is a duplicate.
* An object that cannot be placed (a section id that is not CRN.TERM and no
  known group says its term) is rejected with the reason and the rest applied.

A person's ``state_version`` rises with every message applied to them and is
at least the message's arrival time in milliseconds, so it keeps rising even if
the state topic were lost; events carry it (consumers keep the newest state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lmb.events import Received, person_event, person_terms
from lmb.groups import apply_crosslist_member, apply_group
from lmb.messages import INSTRUCTOR, LEARNER, ImsGroup, ImsMember, ImsMessage, ImsPerson
from lmb.terms import (
    BannerSection,
    NotBannerId,
    banner_section,
    banner_term,
    term_code,
)
from schemas.events import (
    EnrolmentEvent,
    Operation,
    PersonDetails,
    TableChange,
    TermKey,
)
from schemas.lmb import LmbGroupRecord, LmbMembership, LmbPersonRecord

#: How many message keys a record remembers for recognising repeats.
APPLIED_KEPT = 64
APPLIED_ROLES = frozenset({LEARNER, INSTRUCTOR})


class BookView(Protocol):
    """What the decision reads of the book."""

    def person(self, sourcedid: str) -> LmbPersonRecord | None:
        """The person's record, if any."""
        ...

    def group(self, sourcedid: str) -> LmbGroupRecord | None:
        """The group's record, if any."""
        ...


@dataclass(slots=True)
class Outcome:
    """What applying one message changes."""

    people: dict[str, LmbPersonRecord] = field(default_factory=dict)
    groups: dict[str, LmbGroupRecord] = field(default_factory=dict)
    events: list[EnrolmentEvent] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: int = 0

    @property
    def duplicate(self) -> bool:
        """Every object of the message had been applied already."""
        return self.skipped > 0 and not (self.people or self.groups or self.rejected)


@dataclass(slots=True)
class _Work:
    book: BookView
    received: Received
    outcome: Outcome = field(default_factory=Outcome)
    changes: dict[str, list[tuple[TermKey | None, TableChange]]] = field(
        default_factory=dict
    )

    def person(self, sourcedid: str) -> LmbPersonRecord:
        return (
            self.outcome.people.get(sourcedid)
            or self.book.person(sourcedid)
            or LmbPersonRecord(people_code_id=sourcedid)
        )

    def seen_by_person(self, sourcedid: str) -> bool:
        before = self.book.person(sourcedid)
        return before is not None and self.received.key in before.applied

    def seen_by_group(self, sourcedid: str) -> bool:
        before = self.book.group(sourcedid)
        return before is not None and self.received.key in before.applied

    def note_change(
        self, person: str, term: TermKey | None, change: TableChange
    ) -> None:
        self.changes.setdefault(person, []).append((term, change))


def apply_message(message: ImsMessage, book: BookView, received: Received) -> Outcome:
    """The records ``message`` changes and the events to publish (see the module doc)."""
    work = _Work(book, received)
    work.outcome.rejected.extend(message.problems)
    for item in message.objects:
        if isinstance(item, ImsPerson):
            _person(work, item)
        elif isinstance(item, ImsGroup):
            _group(work, item)
        elif item.kind == "group":
            _crosslist(work, item)
        else:
            _membership(work, item)
    _finish(work)
    return work.outcome


def _person(work: _Work, item: ImsPerson) -> None:
    if work.seen_by_person(item.sourcedid):
        work.outcome.skipped += 1
        return
    before = work.person(item.sourcedid)
    details = PersonDetails(
        first_name=item.given,
        last_name=item.family,
        nickname=item.nickname,
        email=item.email,
        username=item.userid("Logon ID"),
    )
    operation: Operation = "update" if before.details else "insert"
    if item.recstatus == "delete":
        operation = "delete"
    work.outcome.people[item.sourcedid] = before.model_copy(
        update={"details": details, "deleted": item.recstatus == "delete"}
    )
    change = TableChange(
        table="LMB_PERSON", key=item.sourcedid, operation=operation, change_version=0
    )
    work.note_change(item.sourcedid, None, change)


def _group(work: _Work, item: ImsGroup) -> None:
    if work.seen_by_group(item.sourcedid):
        work.outcome.skipped += 1
        return
    before = work.outcome.groups.get(item.sourcedid) or work.book.group(item.sourcedid)
    work.outcome.groups[item.sourcedid] = apply_group(
        item, before, work.received.key, APPLIED_KEPT
    )


def _crosslist(work: _Work, item: ImsMember) -> None:
    if work.seen_by_group(item.group):
        work.outcome.skipped += 1
        return
    before = work.outcome.groups.get(item.group) or work.book.group(item.group)
    work.outcome.groups[item.group] = apply_crosslist_member(
        item, before, work.received.key, APPLIED_KEPT
    )
    verb = "joined" if item.active and not item.deleted else "left"
    work.outcome.notes.append(
        f"section {item.member} {verb} cross-list {item.group}: regenerate the "
        "term's mapping (enrolstream lmb mapping)"
    )


def _section(work: _Work, sourcedid: str) -> BannerSection:
    try:
        return banner_section(sourcedid)
    except NotBannerId:
        group = work.outcome.groups.get(sourcedid) or work.book.group(sourcedid)
        if group is None or group.term is None:
            raise
        return BannerSection(sourcedid, sourcedid, banner_term(group.term))


def _membership(work: _Work, item: ImsMember) -> None:
    if work.seen_by_person(item.member):
        work.outcome.skipped += 1
        return
    try:
        section = _section(work, item.group)
    except NotBannerId as exc:
        work.outcome.rejected.append(
            f"membership of {item.member} in {item.group}: {exc}"
        )
        return
    before = work.person(item.member)
    same = [
        m
        for m in before.memberships
        if (m.section, m.roletype) == (section.sourcedid, item.roletype)
    ]
    kept = [m for m in before.memberships if m not in same]
    operation: Operation = "update" if same else "insert"
    if item.deleted:
        operation = "delete"
    else:
        kept.append(
            LmbMembership(
                section=section.sourcedid,
                crn=section.crn,
                term=term_code(section.term),
                roletype=item.roletype,
                active=item.active,
            )
        )
    work.outcome.people[item.member] = before.model_copy(
        update={"memberships": tuple(kept)}
    )
    if item.roletype not in APPLIED_ROLES:
        work.outcome.notes.append(
            f"role {item.roletype} of {item.member} in {section.sourcedid} kept, not "
            "applied (only 01 learner and 02 instructor are)"
        )
        return
    change = TableChange(
        table="LMB_MEMBERSHIP",
        key=f"{section.sourcedid}|{item.member}|{item.roletype}",
        operation=operation,
        change_version=0,
        section=section.key(),
    )
    work.note_change(item.member, section.term, change)


def _finish(work: _Work) -> None:
    """Advance each changed person's version, remember the message, build the events."""
    received = work.received
    stamp = int(received.received_at.timestamp() * 1000)
    for sourcedid, changed in list(work.outcome.people.items()):
        before = work.book.person(sourcedid)
        version = max((before.state_version if before else 0) + 1, stamp)
        applied = (*(before.applied if before else ()), received.key)[-APPLIED_KEPT:]
        record = changed.model_copy(
            update={"state_version": version, "applied": applied}
        )
        work.outcome.people[sourcedid] = record
        for term, change in work.changes.get(sourcedid, ()):
            stamped = change.model_copy(update={"change_version": version})
            terms = [term] if term is not None else person_terms(record)
            work.outcome.events.extend(
                person_event(record, t, stamped, received) for t in terms
            )
