"""The read side of ``MoodleState``: lookups and the rules that derive from rows.

Whether an enrolment is active, a course's sort order, its contacts and a
user's enrolled courses are computed here from the tables and the site clock,
using the indexes ``Tables`` keeps, so each costs what it returns rather than
a scan of the site. ``MoodleState`` inherits these methods; nothing here writes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from sandbox.moodle_sim.site import Token
from sandbox.moodle_sim.tables import (
    Course,
    EnrolmentView,
    Notification,
    Tables,
    User,
    UserEnrolment,
)

_CATEGORY_SORTORDER = 10000


class StateReads:
    """Read-only queries over one site's tables (a base of ``MoodleState``)."""

    clock: Callable[[], float]
    _t: Tables

    def now(self) -> int:
        """The site clock, in whole seconds."""
        return int(self.clock())

    # -- reads -----------------------------------------------------------------
    def token(self, token: str) -> Token | None:
        """The token record, if it exists."""
        return self._t.tokens.get(token)

    def user(self, userid: int) -> User | None:
        """The user with this id, if any."""
        return self._t.users.get(userid)

    def users(self) -> list[User]:
        """All users in id order."""
        return list(self._t.users.values())

    def course(self, courseid: int) -> Course | None:
        """The course with this id, if any."""
        return self._t.courses.get(courseid)

    def course_by_context(self, contextid: int) -> Course | None:
        """The course whose context has this id, if any."""
        courseid = self._t.context_courses.get(contextid)
        return None if courseid is None else self._t.courses[courseid]

    def courses(self) -> list[Course]:
        """All courses in id order (the front page included)."""
        return list(self._t.courses.values())

    @property
    def notifications(self) -> list[Notification]:
        """Every message sent so far, oldest first."""
        return list(self._t.notifications)

    def roles_of(self, courseid: int, userid: int) -> set[int]:
        """Role ids the user holds in the course."""
        return set(self._t.roles.get(courseid, {}).get(userid, ()))

    def enrolment(self, courseid: int, userid: int) -> UserEnrolment | None:
        """The manual enrolment of the user in the course, if any."""
        return self._t.enrolments.get(courseid, {}).get(userid)

    def enrolments(self, courseid: int) -> list[EnrolmentView]:
        """The course's manual enrolments in user-id order, with role ids."""
        rows = self._t.enrolments.get(courseid, {})
        roles = self._t.roles.get(courseid, {})
        return [
            EnrolmentView(
                uid,
                ue.status,
                ue.timestart,
                ue.timeend,
                tuple(sorted(roles.get(uid, ()))),
            )
            for uid, ue in sorted(rows.items())
        ]

    def has_access(self, courseid: int, userid: int) -> bool:
        """In the course for real: an active enrolment that holds a role.

        A dropped student lacks it whichever way the drop was made: suspended,
        role removed (the enrolment stays active, role-less) or unenrolled.
        """
        return self.is_active(courseid, userid) and bool(
            self.roles_of(courseid, userid)
        )

    def is_active(self, courseid: int, userid: int) -> bool:
        """Enrolment active now: status 0, enabled instance, inside its time window."""
        ue = self.enrolment(courseid, userid)
        course = self._t.courses.get(courseid)
        manual = course.manual() if course else None
        if ue is None or manual is None or manual.status != 0 or ue.status != 0:
            return False
        now = self.now()
        return ue.timestart <= now and (ue.timeend == 0 or ue.timeend > now)

    def sortorder(self, courseid: int) -> int:
        """Category sort order: the newest course of a category comes first."""
        course = self._t.courses[courseid]
        ids = self._t.category_courses[course.categoryid]
        category = self._t.categories.get(course.categoryid)
        base = _CATEGORY_SORTORDER if category is None else category.sortorder
        return base + len(ids) - bisect_left(ids, courseid)

    def enrolled_courses(self, userid: int) -> list[Course]:
        """Courses the user is actively enrolled in, in category sort order."""
        courseids = sorted(self._t.user_courses.get(userid, ()))
        active = [self._t.courses[c] for c in courseids if self.is_active(c, userid)]
        # A stable sort of id-ordered courses, as Moodle lists ties by id.
        active.sort(key=lambda c: self.sortorder(c.id))
        return active

    def contacts(self, courseid: int) -> list[int]:
        """Course contacts: actively enrolled editing teachers, by user id."""
        holders = self._t.course_teachers.get(courseid, ())
        return sorted(uid for uid in holders if self.is_active(courseid, uid))
