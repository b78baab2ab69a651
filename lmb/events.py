"""A person's Banner state in one term as an enrolment event (contract v3). Pure.

Learner memberships (roletype 01) are the event's ``registrations`` (status 1
``'A'``, 0 ``'D'``; no TranscriptDetailId), active instructor memberships (02)
its ``teaching``; a deleted membership is in neither. ``standing`` stays None:
LMB sends no term withdrawals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from lmb.messages import INSTRUCTOR, LEARNER
from lmb.terms import BannerSection, banner_term
from schemas.events import (
    EVENT_ID_NAMESPACE,
    EnrolmentEvent,
    Registration,
    TableChange,
    Teaching,
    TermKey,
)
from schemas.lmb import LmbMembership, LmbPersonRecord


@dataclass(frozen=True, slots=True)
class Received:
    """The message's identity and arrival: what makes its events' ids and versions."""

    key: str
    received_at: datetime
    source: str


def _section(membership: LmbMembership) -> BannerSection:
    return BannerSection(
        membership.section, membership.crn, banner_term(membership.term)
    )


def person_terms(record: LmbPersonRecord) -> list[TermKey]:
    """The terms the person has memberships in (any role or status), first seen first."""
    terms: dict[tuple[str, str], TermKey] = {}
    for membership in record.memberships:
        term = _section(membership).term
        terms.setdefault(term.key(), term)
    return list(terms.values())


def person_event(
    record: LmbPersonRecord, term: TermKey, change: TableChange, received: Received
) -> EnrolmentEvent:
    """The person's whole state in ``term`` after ``change``, as a change event."""
    registrations, teaching = term_state(record, term)
    return EnrolmentEvent(
        event_id=lmb_event_id(received, change, record.people_code_id, term),
        kind="change",
        source=received.source,
        people_code_id=record.people_code_id,
        term=term,
        state_version=record.state_version,
        registrations=registrations,
        teaching=teaching,
        person=record.details,
        change=change,
        captured_at=received.received_at,
    )


def term_state(
    record: LmbPersonRecord, term: TermKey
) -> tuple[tuple[Registration, ...], tuple[Teaching, ...]]:
    """The person's registrations (learner) and teaching (active instructor) in ``term``."""
    in_term = [m for m in record.memberships if _section(m).term.matches(term)]
    registrations = tuple(
        Registration(
            transcript_detail_id=None,
            section=_section(m).key(),
            add_drop_wait="A" if m.active else "D",
        )
        for m in in_term
        if m.roletype == LEARNER
    )
    teaching = tuple(
        Teaching(section=_section(m).key())
        for m in in_term
        if m.roletype == INSTRUCTOR and m.active
    )
    return registrations, teaching


def lmb_event_id(
    received: Received, change: TableChange, people_code_id: str, term: TermKey
) -> str:
    """The id of an LMB event: the message, the object it changed and whose term it is.

    The same message received again (LMB's retry) gives the same ids.
    """
    name = (
        f"{received.source}|LMB|{received.key}|{change.table}|{change.key}|"
        f"{people_code_id}|{term.label()}"
    )
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
