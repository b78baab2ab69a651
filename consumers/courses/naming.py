"""Names from templates: a Moodle course's shortname, idnumber and full name, its
category, and a section group's name.

Templates are Python format strings over named fields only (``{courses}``),
checked once when the settings are read (``template_problem``), so a typo is a
configuration error naming the key, never a half-named course. The default
shortname is the convention of campus-enrollment-sync's mapping files:
``{courses}{sections}{term}{year}`` gives ``COUN6552COUN855202Winter2021`` for
section 02 of two cross-listed courses and ``BSC5102Winter2021`` for every
section of one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CATEGORY_FIELDS",
    "COURSE_FIELDS",
    "GROUP_FIELDS",
    "CourseNaming",
    "render",
    "template_problem",
]

#: Fields of a course's templates (``ProposedCourse.fields``).
COURSE_FIELDS = (
    "courses",
    "course",
    "sections",
    "term",
    "year",
    "title",
    "department",
    "shortname",
)
#: Fields of a category's templates.
CATEGORY_FIELDS = ("term", "year", "department")
#: Fields of a section group's name.
GROUP_FIELDS = ("event_id", "sub_type", "section", "session", "term", "year")


def template_problem(template: str, allowed: tuple[str, ...]) -> str | None:
    """Why ``template`` cannot be used with ``allowed`` fields (None: it can)."""
    if not template.strip():
        return "the template is empty"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a format template: {exc}"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in allowed:
            return f"unknown field {{{field}}}; fields: " + ", ".join(
                f"{{{name}}}" for name in allowed
            )
        if spec or conversion:
            return f"{{{field}}} takes no format spec or conversion"
    return None


def render(template: str, fields: Mapping[str, str]) -> str:
    """The template filled in, blanks around it dropped (checked templates only)."""
    return template.format_map(dict(fields)).strip()


@dataclass(frozen=True, slots=True)
class CourseNaming:
    """The templates of everything ``mapping generate`` names."""

    shortname: str = "{courses}{sections}{term}{year}"
    idnumber: str = "{shortname}"
    fullname: str = "{title} {term} {year}"
    category_idnumber: str = "{year}{term}"
    category_name: str = "{term} {year}"
    group_name: str = "{event_id} {sub_type} {section}"

    def problems(self) -> list[tuple[str, str]]:
        """(template name, problem) for every template that cannot be used."""
        checks = {
            "shortname": COURSE_FIELDS[:-1],  # it cannot name itself
            "idnumber": COURSE_FIELDS,
            "fullname": COURSE_FIELDS,
            "category_idnumber": CATEGORY_FIELDS,
            "category_name": CATEGORY_FIELDS,
            "group_name": GROUP_FIELDS,
        }
        found = []
        for name, allowed in checks.items():
            problem = template_problem(getattr(self, name), allowed)
            if problem is not None:
                found.append((name, problem))
        return found
