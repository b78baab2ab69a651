"""The reconcile's vocabulary: planned changes, reported differences, the plan.

Plain frozen values built by ``consumers.reconcile.plan`` and read by the
driver, the report writer and ``ledger adopt``. ``CachedMapping`` lives here
too: both the planner and adoption decide a whole snapshot at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.mapping import MappingSet, MoodleCourse
from consumers.reconcile.guard import GuardReport
from schemas.actions import (
    DROP_KINDS,
    CourseRef,
    DesiredEnrolment,
    LedgerEntry,
    MoodleAction,
    MoodleActionKind,
    RoleSource,
)
from schemas.events import SectionKey

__all__ = [
    "DROPS",
    "CachedMapping",
    "ChangeKind",
    "CourseCounts",
    "PlannedChange",
    "ReconcilePlan",
    "UnownedDifference",
    "UnresolvedPerson",
]

ChangeKind = MoodleActionKind
DROPS: frozenset[ChangeKind] = DROP_KINDS


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One Moodle call the reconcile plans, and why."""

    kind: ChangeKind
    action: MoodleAction
    course: CourseRef
    userid: int
    user_idnumber: str
    people_code_id: str | None
    roleid: int
    reason: str
    previous: LedgerEntry | None
    event_id: str
    #: The decision the change comes from (which source each role is for).
    desired: DesiredEnrolment
    #: The sources whose role the change concerns (student, instructor).
    about: tuple[RoleSource, ...] = ("student",)
    #: The student side is dropped because the person left the term (ACADEMIC).
    term_withdrawal: bool = False

    @property
    def is_drop(self) -> bool:
        """A role removal, suspend or unenrol (what the mass-drop guard counts)."""
        return self.kind in DROPS


@dataclass(frozen=True, slots=True)
class UnownedDifference:
    """Moodle and PowerCampus disagree on an enrolment we do not own: reported only."""

    course: CourseRef
    userid: int
    user_idnumber: str
    people_code_id: str | None
    moodle: str
    powercampus: str


@dataclass(frozen=True, slots=True)
class UnresolvedPerson:
    """A person PowerCampus enrols somewhere who has no single Moodle account."""

    people_code_id: str
    reason: str
    courses: tuple[str, ...]


@dataclass(slots=True)
class CourseCounts:
    """Per mapped course: planned changes by kind, and what was left alone."""

    course: CourseRef
    owned_active: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    in_step: int = 0
    unowned: int = 0
    stale: int = 0
    #: Active enrolments holding none of our roles (teachers, assistants) that
    #: PowerCampus says nothing about: not ours to decide, not a difference.
    other_roles: int = 0


@dataclass(slots=True)
class ReconcilePlan:
    """Everything one reconcile decided (nothing applied yet)."""

    snapshot_id: str
    state_version: int
    changes: list[PlannedChange] = field(default_factory=list)
    unowned: list[UnownedDifference] = field(default_factory=list)
    unresolved: list[UnresolvedPerson] = field(default_factory=list)
    counts: dict[int, CourseCounts] = field(default_factory=dict)
    missing_rosters: list[CourseRef] = field(default_factory=list)
    guard: GuardReport = field(default_factory=GuardReport)


class CachedMapping(MappingSet):
    """A ``MappingSet`` remembering ``courses_for`` per section.

    A snapshot asks about every registration of every person, each section many
    times over (``desired_enrolments`` re-checks each registration per course);
    the answer for a section never changes during one plan.
    """

    def __init__(self, mapping: MappingSet) -> None:
        """Index the same entries as ``mapping``."""
        super().__init__(mapping.terms(), mapping.entries())
        self._cache: dict[SectionKey, tuple[MoodleCourse, ...]] = {}

    def courses_for(self, section: SectionKey) -> tuple[MoodleCourse, ...]:
        """As ``MappingSet.courses_for``, computed once per section."""
        found = self._cache.get(section)
        if found is None:
            found = self._cache[section] = super().courses_for(section)
        return found
