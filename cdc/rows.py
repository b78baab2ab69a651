"""TRANSCRIPTDETAIL as every ``ChangeSource`` reads it: the columns and the conversion.

Both adapters (SQL Server and the sandbox) select ``TRANSCRIPT_COLUMNS`` in this
order and turn each result row into a ``TranscriptRow`` with ``transcript_row``,
so the two can never normalise differently. Values are normalised as
PowerCampus compares them: trailing spaces removed (``nvarchar`` padding), case
kept; keys are matched case-insensitively elsewhere, as the ``..._CI_AS``
collation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdc.ports import TranscriptRow
from schemas.collation import unpad
from schemas.events import SectionKey

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
    )
