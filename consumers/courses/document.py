"""A term's proposed courses found in Moodle, written as a mapping file, compared. Pure.

``match`` decides, from what Moodle answered for one proposed course's idnumber
and shortname, whether it is *found* (one Moodle course, by idnumber, else by
shortname), *missing* (neither) or *ambiguous* (several candidates: reported
with each, never guessed). ``resolve`` then marks as ambiguous every course
that another proposed course also found (one Moodle course cannot be two).

``document`` writes the found courses as mapping entries (``mapping_file``'s
format): ``courses`` and no ``section`` for a course taking every section of its
EVENT_IDs, ``section`` when one code is shared by all of them, else the exact
``sections``; ``starts``/``ends`` when asked. ``difference`` compares it with
the term's current mapping, entry by entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from consumers.courses.proposal import ProposedCourse
from consumers.mapping_file import MappingEntry
from schemas.collation import collate

__all__ = [
    "Difference",
    "Match",
    "NamedCourse",
    "difference",
    "document",
    "entry",
    "match",
    "resolve",
]

Record = Mapping[str, object]
Status = Literal["found", "missing", "ambiguous"]


@dataclass(frozen=True, slots=True)
class NamedCourse:
    """A proposed course with the names the templates gave it."""

    proposal: ProposedCourse
    shortname: str
    idnumber: str
    fullname: str


@dataclass(frozen=True, slots=True)
class Match:
    """What Moodle holds for one proposed course."""

    course: NamedCourse
    status: Status
    moodle_id: int | None = None
    by: Literal["idnumber", "shortname"] | None = None
    #: For an ambiguous course: each candidate as ``id shortname (idnumber)``.
    candidates: tuple[str, ...] = ()
    note: str = ""


def _label(record: Record) -> str:
    return f"{record.get('id')} {record.get('shortname')!r} (idnumber {record.get('idnumber')!r})"


def match(
    course: NamedCourse, by_idnumber: Sequence[Record], by_shortname: Sequence[Record]
) -> Match:
    """Found by idnumber, else by shortname; ambiguous when two courses qualify."""
    ids = {int(str(r["id"])) for r in [*by_idnumber, *by_shortname]}
    candidates = tuple(
        _label(r)
        for r in {int(str(r["id"])): r for r in [*by_idnumber, *by_shortname]}.values()
    )
    if len(ids) > 1:
        return Match(
            course,
            "ambiguous",
            candidates=candidates,
            note="the idnumber and the shortname name different Moodle courses"
            if by_idnumber and by_shortname
            else "several Moodle courses answer",
        )
    if by_idnumber:
        return Match(course, "found", int(str(by_idnumber[0]["id"])), "idnumber")
    if by_shortname:
        found = by_shortname[0]
        note = ""
        if found.get("idnumber"):
            note = f"found by shortname; its idnumber is {found.get('idnumber')!r}"
        return Match(course, "found", int(str(found["id"])), "shortname", note=note)
    return Match(course, "missing")


def resolve(matches: Sequence[Match]) -> list[Match]:
    """``matches`` with every Moodle course found by two proposed courses ambiguous."""
    taken = Counter(m.moodle_id for m in matches if m.status == "found")
    resolved = []
    for one in matches:
        if one.status == "found" and taken[one.moodle_id] > 1:
            others = [
                o.course.shortname
                for o in matches
                if o.moodle_id == one.moodle_id and o is not one
            ]
            note = (
                f"Moodle course {one.moodle_id} is also found for {', '.join(others)}"
            )
            resolved.append(
                Match(
                    one.course,
                    "ambiguous",
                    candidates=(f"{one.moodle_id}",),
                    note=note,
                )
            )
        else:
            resolved.append(one)
    return resolved


def entry(
    course: ProposedCourse, moodle_id: int, *, dates: tuple[date, date] | None = None
) -> dict[str, object]:
    """The course's mapping entry (see the module doc)."""
    value: dict[str, object] = {"courses": list(course.event_ids)}
    codes = course.section_codes
    if not course.every_section:
        product = {(collate(e), collate(c)) for e in course.event_ids for c in codes}
        pairs = {(collate(e), collate(s)) for e, s in course.pairs}
        if len(codes) == 1 and product == pairs:
            value["section"] = codes[0]
        else:
            value["sections"] = [f"{e}/{s}" for e, s in course.pairs]
    if dates is not None:
        value["starts"], value["ends"] = dates[0].isoformat(), dates[1].isoformat()
    value["id"] = moodle_id
    return value


def document(
    matches: Sequence[Match],
    dates: Mapping[str, tuple[date, date]] | None = None,
) -> dict[str, dict[str, object]]:
    """The mapping file of the found courses, keyed by shortname, in proposal order."""
    dates = dates or {}
    return {
        m.course.shortname: entry(
            m.course.proposal, m.moodle_id, dates=dates.get(m.course.shortname)
        )
        for m in matches
        if m.status == "found" and m.moodle_id is not None
    }


@dataclass(frozen=True, slots=True)
class Difference:
    """What writing the new mapping would change, by shortname."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: shortname -> what changed, in words.
    changed: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        """Whether anything changes."""
        return bool(self.added or self.removed or self.changed)


def _as_written(current: MappingEntry) -> dict[str, object]:
    value: dict[str, object] = {"courses": list(current.event_ids)}
    if current.section is not None:
        value["section"] = current.section
    if current.sections is not None:
        value["sections"] = [f"{e}/{s}" for e, s in current.sections]
    if not current.groups:
        value["groups"] = False
    for key, day in (("starts", current.starts), ("ends", current.ends)):
        if day is not None:
            value[key] = day.isoformat()
    value["id"] = current.course.id
    return value


def _comparable(value: Mapping[str, object]) -> dict[str, object]:
    """An entry with PowerCampus values collated, for comparison."""
    result: dict[str, object] = {}
    for key, item in value.items():
        if key in {"courses", "sections"} and isinstance(item, list):
            result[key] = sorted(collate(str(v)) for v in item)
        elif key == "section":
            result[key] = collate(str(item))
        else:
            result[key] = item
    return result


def difference(
    current: Sequence[MappingEntry], new: Mapping[str, Mapping[str, object]]
) -> Difference:
    """The new document against the term's current entries."""
    old = {e.course.shortname: _as_written(e) for e in current}
    diff = Difference()
    for shortname, value in new.items():
        before = old.get(shortname)
        if before is None:
            diff.added.append(shortname)
            continue
        was, now = _comparable(before), _comparable(value)
        changes = [
            f"{key}: {before.get(key)!r} -> {value.get(key)!r}"
            for key in dict.fromkeys([*was, *now])
            if was.get(key) != now.get(key) and key != "groups"
        ]
        if changes:
            diff.changed[shortname] = changes
    diff.removed.extend(s for s in old if s not in new)
    return diff
