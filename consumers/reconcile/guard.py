"""The reconcile's mass-drop guard, pure: is this plan dropping too much to trust?

A source that lost a section, a term or a whole table looks exactly like mass
withdrawals. The guard compares the planned drops (suspend or unenrol) with
the enrolments we own that Moodle holds active:

* per course: drops / owned active > ``per_course`` trips that course;
* overall: all drops / all owned active > ``overall`` trips the run;
* a term for which the snapshot carries no event at all, while we own active
  enrolments in its courses, is an empty source. That trip cannot be forced.

A tripped guard means nothing at all is applied (not only the drops) unless
the operator passes ``force``, and never for an empty source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from schemas.actions import CourseRef

__all__ = ["GuardLimits", "GuardReport", "GuardTrip", "check_guard"]

TripScope = Literal["course", "overall", "empty_term"]


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The largest shares of owned active enrolments one run may drop."""

    per_course: float
    overall: float


@dataclass(frozen=True, slots=True)
class GuardTrip:
    """One reason the guard refuses the plan."""

    scope: TripScope
    name: str
    drops: int
    owned_active: int
    limit: float

    @property
    def share(self) -> float:
        """Drops as a share of owned active enrolments (0 when none are owned)."""
        return self.drops / self.owned_active if self.owned_active else 0.0

    @property
    def overridable(self) -> bool:
        """Whether ``--force`` may apply the plan anyway (never for an empty source)."""
        return self.scope != "empty_term"

    def describe(self) -> str:
        """One line for the report and the terminal."""
        if self.scope == "empty_term":
            return (
                f"term {self.name}: the snapshot has no registration at all, but we "
                f"own {self.owned_active} active enrolments there (not overridable)"
            )
        return (
            f"{self.scope} {self.name}: {self.drops} drops of {self.owned_active} "
            f"owned active enrolments ({self.share:.1%} > {self.limit:.1%})"
        )


@dataclass(frozen=True, slots=True)
class GuardReport:
    """The guard's verdict on one plan."""

    drops: int = 0
    owned_active: int = 0
    trips: tuple[GuardTrip, ...] = field(default_factory=tuple)

    @property
    def tripped(self) -> bool:
        """Whether any limit was exceeded."""
        return bool(self.trips)

    def blocks(self, *, force: bool) -> bool:
        """Whether the plan must not be applied (``force`` overrides shares only)."""
        if not force:
            return self.tripped
        return any(not trip.overridable for trip in self.trips)


class _CourseDrops(Protocol):
    @property
    def course(self) -> CourseRef: ...
    @property
    def owned_active(self) -> int: ...


class _Change(Protocol):
    @property
    def course(self) -> CourseRef: ...
    @property
    def is_drop(self) -> bool: ...


def check_guard(
    courses: Iterable[_CourseDrops],
    changes: Sequence[_Change],
    limits: GuardLimits,
    *,
    empty_terms: Sequence[tuple[str, int]] = (),
) -> GuardReport:
    """The guard's verdict: per course, overall, and empty terms, in that order.

    ``empty_terms`` lists (term label, owned active enrolments) of terms the
    snapshot carries no event for.
    """
    drops: dict[int, int] = {}
    for change in changes:
        if change.is_drop:
            drops[change.course.id] = drops.get(change.course.id, 0) + 1
    trips: list[GuardTrip] = []
    total_owned = 0
    for counts in courses:
        owned = counts.owned_active
        total_owned += owned
        dropped = drops.get(counts.course.id, 0)
        if dropped and dropped > limits.per_course * owned:
            trips.append(
                GuardTrip(
                    "course", counts.course.shortname, dropped, owned, limits.per_course
                )
            )
    total_drops = sum(drops.values())
    if total_drops and total_drops > limits.overall * total_owned:
        trips.append(
            GuardTrip(
                "overall", "all courses", total_drops, total_owned, limits.overall
            )
        )
    trips.extend(
        GuardTrip("empty_term", term, 0, owned, 0.0) for term, owned in empty_terms
    )
    return GuardReport(drops=total_drops, owned_active=total_owned, trips=tuple(trips))
