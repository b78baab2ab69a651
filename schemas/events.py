"""The versioned enrolment event contract, shared by the poller and the consumers.

Change tracking reports *state*, not history (an A→D→A inside one poll interval
reads as one update with the final row), so an event does not describe a
transition to replay. It carries the person's **complete registration state for
one academic term** as of a change-tracking version, plus which row changed.
A consumer decides the desired Moodle state from the event alone, without
asking PowerCampus anything.

Every event is keyed on Kafka by ``people_code_id``, so one student's events stay
in order across sections (a cross-list swap is a drop in one section and an add
in another, in one transaction).

Compatibility: adding an optional field is a minor change within
``schema_version`` 1; removing or retyping a field needs version 2. The exported
JSON Schema beside this module is kept in sync by a test.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.collation import person_term_key, section_key, term_key

SCHEMA_VERSION: Literal[1] = 1

_TERM_LABEL = re.compile(r"(?P<year>\d{4})\s*/(?P<term>[^/]*[^/\s][^/]*)")

#: Namespace of the deterministic event ids (uuid5); never change it.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c3a52-3a8e-4c59-9a53-0f6d8e7b2a10")

AddDropWait = Literal["A", "D", "W"]
Operation = Literal["insert", "update", "delete"]
EventKind = Literal["change", "snapshot"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TermKey(_Frozen):
    """An academic term as PowerCampus keys it (ACADEMIC_YEAR, ACADEMIC_TERM)."""

    academic_year: str = Field(description="ACADEMIC_YEAR, e.g. '2021'.")
    academic_term: str = Field(
        description="ACADEMIC_TERM as stored, trailing spaces removed, e.g. 'Winter'."
    )

    @classmethod
    def parse(cls, label: str) -> TermKey:
        """``"2021/Winter"`` → the term; ``ValueError`` unless the label is ``YEAR/TERM``.

        The one parser of term labels (settings, mapping files, command options):
        a four-digit ACADEMIC_YEAR, a slash, a non-blank ACADEMIC_TERM; blanks
        around the label and the term are dropped.
        """
        match = _TERM_LABEL.fullmatch(label.strip())
        if match is None:
            raise ValueError(f"term {label!r} is not YEAR/TERM (e.g. 2021/Winter)")
        return cls(academic_year=match["year"], academic_term=match["term"].strip())

    def label(self) -> str:
        """The term as people write it: ``2021/Winter``."""
        return f"{self.academic_year}/{self.academic_term}"

    def key(self) -> tuple[str, str]:
        """The term as PowerCampus's collation compares it (``schemas.collation``)."""
        return term_key(self)

    def matches(self, other: TermKey) -> bool:
        """The same term under PowerCampus's collation (case, trailing spaces)."""
        return self.key() == other.key()


class SectionKey(_Frozen):
    """One section offering: the six columns of the SECTIONS primary key.

    Values are as PowerCampus stores them with trailing spaces removed; compare
    them case-insensitively (the PowerCampus collation is case-insensitive).
    """

    academic_year: str = Field(description="ACADEMIC_YEAR.")
    academic_term: str = Field(description="ACADEMIC_TERM.")
    academic_session: str = Field(description="ACADEMIC_SESSION ('' allowed).")
    event_id: str = Field(description="EVENT_ID, the PowerCampus course id.")
    event_sub_type: str = Field(description="EVENT_SUB_TYPE, e.g. LEC or LAB.")
    section: str = Field(description="SECTION, e.g. '01'.")

    def key(self) -> tuple[str, str, str, str, str, str]:
        """The section as PowerCampus's collation compares it (``schemas.collation``)."""
        return section_key(self)

    @cached_property
    def term(self) -> TermKey:
        """The term this section belongs to (computed once: it is on every hot path)."""
        return TermKey(
            academic_year=self.academic_year, academic_term=self.academic_term
        )


class Registration(_Frozen):
    """One TRANSCRIPTDETAIL row of the person in the term: one person x section."""

    transcript_detail_id: int = Field(description="TranscriptDetailId, the CT key.")
    section: SectionKey = Field(description="The section registered for.")
    add_drop_wait: str = Field(
        description="ADD_DROP_WAIT: A added, D dropped, W wait-listed (others kept)."
    )
    final_grade: str | None = Field(
        default=None, description="FINAL_GRADE; withdrawn or audit grades matter."
    )
    mid_grade: str | None = Field(default=None, description="MID_GRADE.")
    credit_type: str | None = Field(default=None, description="CREDIT_TYPE.")


class RowChange(_Frozen):
    """The TRANSCRIPTDETAIL row whose net change produced this event."""

    transcript_detail_id: int = Field(description="TranscriptDetailId of the row.")
    operation: Operation = Field(
        description="Net operation since the poller's baseline (CT's I/U/D)."
    )
    change_version: int = Field(description="SYS_CHANGE_VERSION of the row.")
    creation_version: int | None = Field(
        default=None, description="SYS_CHANGE_CREATION_VERSION, when within retention."
    )
    section: SectionKey = Field(
        description="The row's section now, or as last seen (from the shadow map) "
        "for a delete."
    )
    previous_section: SectionKey | None = Field(
        default=None,
        description="The section the shadow map held before, when an update moved "
        "the row to another section; a consumer re-decides both.",
    )


class EnrolmentEvent(_Frozen):
    """The desired-state message the consumers act on (schema version 1)."""

    schema_version: Literal[1] = Field(default=1, description="Contract version.")
    event_id: str = Field(
        description="Deterministic id: the same change re-polled or replayed has "
        "the same id."
    )
    kind: EventKind = Field(
        description="'change' from an incremental poll, 'snapshot' from a "
        "(re-)initialisation or an on-demand snapshot."
    )
    source: str = Field(description="Which PowerCampus database produced it.")
    people_code_id: str = Field(description="PEOPLE_CODE_ID, the Kafka key.")
    term: TermKey = Field(description="The term whose state is carried.")
    state_version: int = Field(
        description="The change-tracking version the registrations are consistent "
        "with (the poll's CHANGE_TRACKING_CURRENT_VERSION)."
    )
    registrations: tuple[Registration, ...] = Field(
        description="Every TRANSCRIPTDETAIL row of the person in the term as of "
        "state_version, whatever its ADD_DROP_WAIT."
    )
    change: RowChange | None = Field(
        default=None, description="What changed; None for snapshot events."
    )
    snapshot_id: str | None = Field(
        default=None, description="The snapshot this event belongs to, if any."
    )
    captured_at: datetime = Field(description="When the poller read the change.")
    committed_at: datetime | None = Field(
        default=None,
        description="When PowerCampus committed the change (UTC): the commit time "
        "change tracking records for change.change_version (SQL Server's "
        "sys.dm_tran_commit_table). None for snapshot events, and where the source "
        "cannot tell (history cleaned up, or no permission to read it). Optional "
        "and additive within schema version 1.",
    )

    def kafka_key(self) -> bytes:
        """The partitioning key: the person, so their events stay in order."""
        return self.people_code_id.encode()

    def person_term_key(self) -> tuple[str, str, str]:
        """The event's person and term as PowerCampus's collation compares them."""
        return person_term_key(self.people_code_id, self.term)


def change_event_id(
    source: str, transcript_detail_id: int, change_version: int, operation: Operation
) -> str:
    """The id of a change event: a function of the row version, nothing else."""
    name = (
        f"{source}|TRANSCRIPTDETAIL|{transcript_detail_id}|{change_version}|{operation}"
    )
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def snapshot_event_id(
    source: str, people_code_id: str, term: TermKey, state_version: int
) -> str:
    """The id of a snapshot event: person, term and the version it is consistent with."""
    name = f"{source}|snapshot|{people_code_id}|{term.label()}|{state_version}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
