"""The tracked tables as every ``ChangeSource`` reads them: the columns and the conversions.

Both adapters (SQL Server and the sandbox) select ``TRANSCRIPT_COLUMNS``,
``SECTIONPER_COLUMNS``, ``ACADEMIC_COLUMNS`` and ``PERSON_COLUMNS`` in these
orders and turn each result row into a port value with the functions here, so
the two can never normalise differently. Values are normalised as
PowerCampus compares them: trailing spaces removed (``nvarchar`` padding), case
kept; keys are matched case-insensitively elsewhere, as the ``..._CI_AS``
collation does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from cdc.ports import (
    CtOperation,
    KeyChange,
    RowOwner,
    StandingRow,
    TeachingRow,
    TrackedTable,
    TranscriptRow,
)
from schemas.collation import collate, unpad
from schemas.events import PersonDetails, SectionKey, TermKey

#: The TRANSCRIPTDETAIL columns read, in the order ``transcript_row`` expects.
TRANSCRIPT_COLUMNS = (
    "TranscriptDetailId",
    "PEOPLE_CODE_ID",
    "ACADEMIC_YEAR",
    "ACADEMIC_TERM",
    "ACADEMIC_SESSION",
    "EVENT_ID",
    "EVENT_SUB_TYPE",
    "SECTION",
    "ADD_DROP_WAIT",
    "FINAL_GRADE",
    "MID_GRADE",
    "CREDIT_TYPE",
    "TRANSCRIPT_SEQ",
)


def text(value: object) -> str:
    """A PowerCampus string as stored, without CHAR padding (``unpad``); NULL as ''."""
    return "" if value is None else unpad(str(value))


def optional_text(value: object) -> str | None:
    """Like ``text`` but NULL stays None."""
    return None if value is None else unpad(str(value))


def transcript_row(values: Sequence[Any]) -> TranscriptRow:
    """A TRANSCRIPTDETAIL row in ``TRANSCRIPT_COLUMNS`` order."""
    section = SectionKey(
        academic_year=text(values[2]),
        academic_term=text(values[3]),
        academic_session=text(values[4]),
        event_id=text(values[5]),
        event_sub_type=text(values[6]),
        section=text(values[7]),
    )
    return TranscriptRow(
        transcript_detail_id=int(values[0]),
        people_code_id=text(values[1]),
        section=section,
        add_drop_wait=text(values[8]),
        final_grade=optional_text(values[9]),
        mid_grade=optional_text(values[10]),
        credit_type=optional_text(values[11]),
        transcript_seq=optional_text(values[12]),
    )


#: The SECTIONPER columns read, in the order ``teaching_row`` expects; the first
#: seven are its primary key (SECTIONPER_PK), PERSON_CODE_ID the instructor.
SECTIONPER_COLUMNS = (
    "ACADEMIC_YEAR",
    "ACADEMIC_TERM",
    "ACADEMIC_SESSION",
    "EVENT_ID",
    "EVENT_SUB_TYPE",
    "SECTION",
    "PERSON_CODE_ID",
    "PERCENTAGE",
)
SECTIONPER_KEY = SECTIONPER_COLUMNS[:7]

#: The ACADEMIC columns read, in the order ``standing_row`` expects (then
#: CODE_ENROLLMENT.REQUIRE_SEPDATE of the row's code); the first five are its key.
ACADEMIC_COLUMNS = (
    "PEOPLE_CODE_ID",
    "ACADEMIC_YEAR",
    "ACADEMIC_TERM",
    "ACADEMIC_SESSION",
    "TRANSCRIPT_SEQ",
    "ENROLL_SEPARATION",
)
ACADEMIC_KEY = ACADEMIC_COLUMNS[:5]

#: The person details read, in the order ``person_details`` expects: PEOPLE's
#: names, the primary EmailAddress (id, address) and a PersonUser (id, name).
PERSON_COLUMNS = (
    "PEOPLE_CODE_ID",
    "FIRST_NAME",
    "MIDDLE_NAME",
    "LAST_NAME",
    "Nickname",
    "EmailAddressId",
    "Email",
    "PersonUserId",
    "UserName",
)


#: The primary key of each tracked table, as change tracking reports it.
TABLE_KEYS: dict[TrackedTable, tuple[str, ...]] = {
    "TRANSCRIPTDETAIL": ("TranscriptDetailId",),
    "SECTIONPER": SECTIONPER_KEY,
    "ACADEMIC": ACADEMIC_KEY,
    "PEOPLE": ("PEOPLE_CODE_ID",),
    "EmailAddress": ("EmailAddressId",),
    "PersonUser": ("PersonUserId",),
}
#: Person tables keyed by a surrogate id: a delete names nobody, the shadow
#: map's row owners do; an insert or update names the owner through the row.
SURROGATE_KEYED: frozenset[TrackedTable] = frozenset({"EmailAddress", "PersonUser"})
#: The columns a key-change row starts with, before the key's columns.
KEY_CHANGE_PREFIX = 4  # SYS_CHANGE_VERSION, CREATION_VERSION, OPERATION, owner


def deleted_keys(table: TrackedTable, rows: Sequence[Sequence[Any]]) -> list[str]:
    """The surrogate keys of key-change rows whose owner the shadow map must name."""
    if table not in SURROGATE_KEYED:
        return []
    return [text(row[4]) for row in rows if row[2] == "D" or row[3] is None]


def key_change(
    table: TrackedTable, row: Sequence[Any], owners: Mapping[str, str]
) -> KeyChange:
    """One key-change row (version, creation version, operation, owner, key…).

    SECTIONPER's key names the instructor and the section, ACADEMIC's the person
    and the term, PEOPLE's the person; a surrogate-keyed row names its owner
    through the row joined back, or, deleted, through ``owners`` (the shadow
    map). An insert or update whose row is gone (read without snapshot
    isolation) is the delete it has become.
    """
    operation = text(row[2])
    if operation not in {"I", "U", "D"}:
        raise ValueError(f"unexpected SYS_CHANGE_OPERATION {operation!r}")
    values = row[KEY_CHANGE_PREFIX:]
    key = tuple(text(value) for value in values)
    person: str | None = None
    term = section = None
    if table == "SECTIONPER":
        person, section = key[6], section_of_key(key)
        term = section.term
    elif table == "ACADEMIC":
        person, term = key[0], term_of_key(key)
    elif table == "PEOPLE":
        person = key[0]
    elif row[3] is not None and operation != "D":
        person = text(row[3])
    else:
        operation, person = "D", owners.get(key[0])
    return KeyChange(
        table=table,
        key=key,
        operation=cast("CtOperation", operation),
        change_version=int(row[0]),
        creation_version=None if row[1] is None else int(row[1]),
        people_code_id=person,
        term=term,
        section=section,
    )


def _section(values: Sequence[Any]) -> SectionKey:
    return SectionKey(
        academic_year=text(values[0]),
        academic_term=text(values[1]),
        academic_session=text(values[2]),
        event_id=text(values[3]),
        event_sub_type=text(values[4]),
        section=text(values[5]),
    )


def teaching_row(values: Sequence[Any]) -> TeachingRow:
    """A SECTIONPER row in ``SECTIONPER_COLUMNS`` order."""
    percentage = values[7]
    return TeachingRow(
        people_code_id=text(values[6]),
        section=_section(values),
        percentage=None if percentage is None else float(percentage),
    )


def teaching_key(values: Sequence[Any]) -> tuple[str, ...]:
    """SECTIONPER's key as text, from a row in key order (a CT row's key columns)."""
    return tuple(text(v) for v in values[:7])


def section_of_key(key: Sequence[str]) -> SectionKey:
    """The section of a SECTIONPER key (``teaching_key``)."""
    return _section(key)


def standing_row(values: Sequence[Any]) -> StandingRow:
    """An ACADEMIC row in ``ACADEMIC_COLUMNS`` order, then REQUIRE_SEPDATE."""
    required = optional_text(values[6])
    return StandingRow(
        people_code_id=text(values[0]),
        term=TermKey(academic_year=text(values[1]), academic_term=text(values[2])),
        academic_session=text(values[3]),
        transcript_seq=text(values[4]),
        enroll_separation=optional_text(values[5]),
        separation=None if required is None else collate(required) == "y",
    )


def term_of_key(key: Sequence[str]) -> TermKey:
    """The term of an ACADEMIC key (person, year, term, session, transcript)."""
    return TermKey(academic_year=key[1], academic_term=key[2])


def person_details(
    rows: Sequence[Sequence[Any]],
) -> tuple[dict[str, PersonDetails], list[RowOwner]]:
    """Account details per person from ``PERSON_COLUMNS`` rows, and the rows' owners.

    A person with several PersonUser rows gets the lowest PersonUserId's name;
    empty strings read as not set.
    """
    details: dict[str, PersonDetails] = {}
    owners: list[RowOwner] = []
    chosen: dict[str, int] = {}
    for values in sorted(rows, key=lambda v: (text(v[0]), v[7] is None, v[7] or 0)):
        person = text(values[0])
        if values[5] is not None:
            owners.append(RowOwner("EmailAddress", text(values[5]), person))
        if values[7] is not None:
            owners.append(RowOwner("PersonUser", text(values[7]), person))
            if person in chosen:
                continue
            chosen[person] = int(values[7])
        if person in details:
            continue
        details[person] = PersonDetails(
            first_name=optional_text(values[1]) or None,
            middle_name=optional_text(values[2]) or None,
            last_name=optional_text(values[3]) or None,
            nickname=optional_text(values[4]) or None,
            email=(optional_text(values[6]) or "").strip() or None,
            username=(optional_text(values[8]) or "").strip() or None,
        )
    return details, owners
