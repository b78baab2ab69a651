"""IMS Enterprise 1.1 messages as Banner's LMB sends them (shapes: tests/data/lmb/README.md)."""

from __future__ import annotations

from xml.sax.saxutils import escape

SOURCE = "Sandbox SCT Banner"


def _sourcedid(sourcedid: str) -> str:
    return (
        f"<sourcedid><source>{SOURCE}</source><id>{escape(sourcedid)}</id></sourcedid>"
    )


def enterprise(*objects: str) -> bytes:
    """One document holding the objects, with its properties."""
    body = "".join(objects)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<enterprise><properties>'
        f"<datasource>{SOURCE}</datasource></properties>{body}</enterprise>"
    ).encode()


def person(
    sourcedid: str,
    given: str,
    family: str,
    *,
    email: str,
    logon: str,
    delete: bool = False,
) -> str:
    """A ``person`` element."""
    recstatus = ' recstatus="3"' if delete else ""
    return (
        f"<person{recstatus}>{_sourcedid(sourcedid)}"
        f'<userid useridtype="Logon ID">{escape(logon)}</userid>'
        f'<userid useridtype="SCTID">{escape(sourcedid)}</userid>'
        f"<name><fn>{escape(given)} {escape(family)}</fn><n>"
        f"<family>{escape(family)}</family><given>{escape(given)}</given></n></name>"
        f"<email>{escape(email)}</email></person>"
    )


def term(code: str, title: str) -> str:
    """A ``group`` of type Term."""
    return (
        f"<group>{_sourcedid(code)}<grouptype><scheme>Luminis</scheme>"
        '<typevalue level="1">Term</typevalue></grouptype>'
        f"<description><short>{escape(title)}</short><long>{escape(title)}</long>"
        "</description></group>"
    )


def section(crn: str, term_code: str, title: str) -> str:
    """A ``group`` of type CourseSection, ``CRN.TERM``, related to its term."""
    return (
        f"<group>{_sourcedid(f'{crn}.{term_code}')}<grouptype><scheme>Luminis</scheme>"
        '<typevalue level="1">CourseSection</typevalue></grouptype>'
        f"<description><short>{crn}</short><long>{escape(title)}</long></description>"
        f'<relationship relation="1">{_sourcedid(term_code)}<label>Term</label>'
        "</relationship></group>"
    )


def member(
    section_id: str,
    person_id: str,
    *,
    role: str = "01",
    status: int = 1,
    delete: bool = False,
) -> str:
    """A ``membership`` of one person in one section (role 01 learner, 02 instructor)."""
    recstatus = ' recstatus="3"' if delete else ""
    return (
        f"<membership>{_sourcedid(section_id)}<member>{_sourcedid(person_id)}"
        f'<idtype>1</idtype><role roletype = "{role}"{recstatus}>'
        f"<status>{status}</status></role></member></membership>"
    )


def crosslist(crosslist_id: str, section_ids: list[str], *, status: int = 1) -> str:
    """A ``membership`` putting sections into (status 1) or out of (0) a cross-list."""
    members = "".join(
        f"<member>{_sourcedid(s)}<idtype>2</idtype>"
        f'<role roletype = "02"><status>{status}</status></role></member>'
        for s in section_ids
    )
    return f"<membership>{_sourcedid(crosslist_id)}<type>merge</type>{members}</membership>"
