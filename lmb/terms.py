"""Banner's identifiers in the contract's terms: term codes, CRN.TERM sections. Pure.

A Banner term code is four digits of year and the term's own code (``201510``);
in the event contract it is the term ``2015/10`` (``TermKey``: academic_year
``2015``, academic_term ``10``), which is also how mappings and settings name it.
A section's sourcedid is ``CRN.TERM`` (``14482.201510``): in the contract a
section of that term whose EVENT_ID is the CRN (session, sub-type and section
empty), so a mapping entry ``{"courses": ["14482", "14483"]}`` of term
``2015/10`` routes both CRNs to one Moodle course.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.events import SectionKey, TermKey

_TERM_CODE = re.compile(r"(?P<year>\d{4})(?P<term>\w+)")
_SECTION_ID = re.compile(r"(?P<crn>[^.\s]+)\.(?P<term>\d{4}\w+)")


class NotBannerId(ValueError):
    """An identifier that is not of Banner's form; the message says what was expected."""


def banner_term(code: str) -> TermKey:
    """``201510`` → the term ``2015/10``; ``NotBannerId`` unless YEAR + term code."""
    match = _TERM_CODE.fullmatch(code.strip())
    if match is None:
        raise NotBannerId(
            f"term code {code!r} is not a 4-digit year and a term code (e.g. 201510)"
        )
    return TermKey(academic_year=match["year"], academic_term=match["term"])


def term_code(term: TermKey) -> str:
    """The term ``2015/10`` → Banner's code ``201510``."""
    return f"{term.academic_year}{term.academic_term}"


@dataclass(frozen=True, slots=True)
class BannerSection:
    """A section's sourcedid split: its CRN and its term."""

    sourcedid: str
    crn: str
    term: TermKey

    def key(self) -> SectionKey:
        """The section in the event contract: EVENT_ID is the CRN."""
        return SectionKey(
            academic_year=self.term.academic_year,
            academic_term=self.term.academic_term,
            academic_session="",
            event_id=self.crn,
            event_sub_type="",
            section="",
        )


def banner_section(sourcedid: str) -> BannerSection:
    """``14482.201510`` → CRN 14482 of term 2015/10; ``NotBannerId`` otherwise."""
    match = _SECTION_ID.fullmatch(sourcedid.strip())
    if match is None:
        raise NotBannerId(
            f"section id {sourcedid!r} is not CRN.TERM (e.g. 14482.201510)"
        )
    return BannerSection(
        sourcedid=sourcedid.strip(), crn=match["crn"], term=banner_term(match["term"])
    )
