"""The ``[courses]`` section: how ``enrolstream mapping generate`` builds a term's courses.

Templates are checked here, when the settings are read, so a typo stops the
command naming the key (``courses.shortname: unknown field {cours}``) instead of
naming a course badly. See ``consumers.courses.naming`` for the fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from consumers.courses.catalog import CrossTallyColumns
from consumers.courses.naming import (
    CATEGORY_FIELDS,
    COURSE_FIELDS,
    GROUP_FIELDS,
    CourseNaming,
    template_problem,
)

__all__ = ["CoursesSettings", "CrossTallySettings", "check_group_name"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class CrossTallySettings(_Section):
    """Where SECTIONCROSSTALLY keeps what (its columns are not verified: see docs/dba.md)."""

    table: str = Field(
        default="SECTIONCROSSTALLY", description='the table; "" reads no cross-tallies'
    )
    group: str = Field(default="TALLY_CODE", description="the tally code's column")
    year: str = Field(default="ACADEMIC_YEAR", description='"" when the table has none')
    term: str = Field(default="ACADEMIC_TERM", description='"" when the table has none')
    session: str = Field(
        default="ACADEMIC_SESSION", description='"" when the table has none'
    )

    @model_validator(mode="after")
    def _identifiers(self) -> CrossTallySettings:
        problems = self.columns().problems()
        if problems:
            name, problem = problems[0]
            raise ValueError(f"{name}: {problem}")
        return self

    def columns(self) -> CrossTallyColumns:
        """As the catalog readers take them."""
        return CrossTallyColumns(
            table=self.table,
            group=self.group,
            year=self.year,
            term=self.term,
            session=self.session,
        )


def _check(template: str, allowed: tuple[str, ...]) -> str:
    problem = template_problem(template, allowed)
    if problem is not None:
        raise ValueError(problem)
    return template


def check_group_name(template: str) -> str:
    """``consumer.group_name``'s check (a validator's body)."""
    return _check(template, GROUP_FIELDS)


class CoursesSettings(_Section):
    """``mapping generate``: which sections share a course, names, shells."""

    share: Literal["course", "section"] = Field(
        default="course",
        description="course: one Moodle course per PowerCampus course (EVENT_ID) "
        "with all its sections (campus-enrollment-sync's convention); section: "
        "one per section. Cross-tallied sections always share one.",
    )
    crosstally: CrossTallySettings = CrossTallySettings()
    shortname: str = Field(
        default="{courses}{sections}{term}{year}",
        description="the Moodle shortname: COUN6552COUN855202Winter2021",
    )
    idnumber: str = Field(
        default="{shortname}",
        description="the Moodle idnumber, found first: a re-run finds the course by it",
    )
    fullname: str = "{title} {term} {year}"
    category_idnumber: str = Field(
        default="{year}{term}",
        description="the category of new shells, found (or made) by idnumber; "
        "{department} makes one per department",
    )
    category_name: str = "{term} {year}"
    category_parent: int = Field(
        default=0, ge=0, description="where new categories go (0: the top level)"
    )
    visible_days_before: int = Field(
        default=7,
        ge=0,
        description="new shells stay hidden until this many days before the term "
        "starts (ACADEMICCALENDAR); `mapping reveal` shows them then",
    )
    dates_from: Literal["none", "term", "section"] = Field(
        default="none",
        description="write starts/ends into the mapping entries (for "
        "consumer.enrolment_dates = mapping): the term's or the sections' dates",
    )

    @field_validator("shortname")
    @classmethod
    def _shortname(cls, value: str) -> str:
        return _check(value, COURSE_FIELDS[:-1])

    @field_validator("idnumber", "fullname")
    @classmethod
    def _course(cls, value: str) -> str:
        return _check(value, COURSE_FIELDS)

    @field_validator("category_idnumber", "category_name")
    @classmethod
    def _category(cls, value: str) -> str:
        return _check(value, CATEGORY_FIELDS)

    def naming(self, group_name: str) -> CourseNaming:
        """The templates as ``consumers.courses`` takes them."""
        return CourseNaming(
            shortname=self.shortname,
            idnumber=self.idnumber,
            fullname=self.fullname,
            category_idnumber=self.category_idnumber,
            category_name=self.category_name,
            group_name=group_name,
        )
