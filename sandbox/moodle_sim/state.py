"""The simulated Moodle database: users, courses, enrolments, roles, messages, tokens.

Pure and in memory: no I/O and no permission checks (those live in the web
service functions). The model follows Moodle's tables where clients can tell
the difference:

* ``user.idnumber`` is not unique; ``user.suspended`` (account) is separate
  from ``user_enrolments.status`` (enrolment, 0 active / 1 suspended);
* a course has at most one manual instance, enabled, disabled or absent; new
  courses also get disabled guest and self instances;
* role assignments are a set per (course, user): enrolling with another role
  adds one, unenrolling removes the enrolment and every role in the course;
* enrolling into a course that has a contact (an actively enrolled editing
  teacher) sends "Welcome to <fullname>" to the enrolled user, on every call.

``snapshot``/``restore`` copy all tables, to simulate "restored from yesterday's
backup" and to roll a failed batch back.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

ManualInstance = Literal["enabled", "disabled", "absent"]

ROLE_SHORTNAMES: dict[int, str] = {
    1: "manager",
    2: "coursecreator",
    3: "editingteacher",
    4: "teacher",
    5: "student",
    6: "guest",
    7: "user",
    8: "frontpage",
}
EDITING_TEACHER = 3
GUEST_USER_ID = 1
ADMIN_USER_ID = 2
WSCLIENT_USER_ID = 3
SITE_COURSE_ID = 1
_DAY_S = 86400
_CATEGORY_SORTORDER = 10000

DEFAULT_SERVICE_FUNCTIONS: tuple[str, ...] = (
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_enrol_get_enrolled_users",
    "core_user_get_users_by_field",
    "core_course_get_courses_by_field",
    "core_user_create_users",
    "core_course_create_courses",
    "core_webservice_get_site_info",
    "core_enrol_get_course_enrolment_methods",
)
# The recorded wsclient role may assign these; an admin may assign every role
# whose context levels include "course" (coursecreator is category/system only).
WSCLIENT_ASSIGNABLE_ROLES = frozenset({3, 4, 5})
ADMIN_ASSIGNABLE_ROLES = frozenset({1, 3, 4, 5})


@dataclass
class User:
    """A row of ``{user}`` (the fields the simulated functions expose)."""

    id: int
    username: str
    email: str
    firstname: str
    lastname: str
    idnumber: str = ""
    auth: str = "manual"
    suspended: bool = False
    department: str = ""
    lang: str = "en"


@dataclass
class EnrolInstance:
    """A row of ``{enrol}``: plugin name and status (0 enabled, 1 disabled)."""

    enrol: str
    status: int


@dataclass
class Course:
    """A row of ``{course}`` plus its enrolment instances."""

    id: int
    shortname: str
    fullname: str
    idnumber: str
    categoryid: int
    contextid: int
    timecreated: int
    startdate: int
    enddate: int
    instances: list[EnrolInstance] = field(default_factory=list)

    def manual(self) -> EnrolInstance | None:
        """The course's manual instance, enabled or not."""
        return next((i for i in self.instances if i.enrol == "manual"), None)


@dataclass
class UserEnrolment:
    """A row of ``{user_enrolments}`` for the course's manual instance."""

    status: int
    timestart: int
    timeend: int


@dataclass(frozen=True)
class Notification:
    """A message sent by Moodle (only course welcome messages are simulated)."""

    useridto: int
    useridfrom: int
    courseid: int
    subject: str
    name: str = "enrolcoursewelcomemessage"


@dataclass(frozen=True)
class EnrolmentView:
    """One manual enrolment as the harness SQL saw it: status, window and roles."""

    userid: int
    status: int
    timestart: int
    timeend: int
    roleids: tuple[int, ...]


@dataclass(frozen=True)
class Token:
    """A web-service token: its user, its service's functions, the roles it may assign."""

    token: str
    userid: int
    functions: tuple[str, ...] = DEFAULT_SERVICE_FUNCTIONS
    assignable_roles: frozenset[int] = WSCLIENT_ASSIGNABLE_ROLES


@dataclass(frozen=True)
class SiteConfig:
    """Site-wide settings that show up in answers (defaults: the recorded site)."""

    sitename: str = "Moodle WS Harness"
    release: str = "5.1+ (Build: 20251017)"
    version: str = "2025100600.02"
    themerev: int = 1795398843
    category_name: str = "Category 1"


@dataclass
class _Tables:
    users: dict[int, User] = field(default_factory=dict)
    courses: dict[int, Course] = field(default_factory=dict)
    enrolments: dict[int, dict[int, UserEnrolment]] = field(default_factory=dict)
    roles: dict[int, dict[int, set[int]]] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    tokens: dict[str, Token] = field(default_factory=dict)
    next_user_id: int = 1
    next_course_id: int = 1
    next_context_id: int = 2


@dataclass(frozen=True)
class StateSnapshot:
    """An opaque deep copy of every table, taken by ``MoodleState.snapshot``."""

    tables: _Tables


class MoodleState:
    """The in-memory Moodle site; starts with guest (1), admin (2), wsclient (3)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, site: SiteConfig | None = None
    ) -> None:
        self.clock = clock
        self.site = site or SiteConfig()
        self._t = _Tables()
        self.add_user(
            "guest", email="root@localhost", firstname="Guest user", lastname=" "
        )
        self.add_user(
            "admin", email="admin@example.com", firstname="Admin", lastname="User"
        )
        self.add_user(
            "wsclient", email="wsclient@example.com", firstname="WS", lastname="Client"
        )
        self.add_course(
            self.site.sitename, self.site.sitename, manual="absent", extra=False
        )

    # -- setup -----------------------------------------------------------------
    def now(self) -> int:
        """The site clock, in whole seconds."""
        return int(self.clock())

    @property
    def next_context_id(self) -> int:
        """The context id the next user or course gets (settable to match a site)."""
        return self._t.next_context_id

    @next_context_id.setter
    def next_context_id(self, value: int) -> None:
        self._t.next_context_id = value

    def add_user(
        self,
        username: str,
        *,
        email: str | None = None,
        firstname: str = "",
        lastname: str = "",
        idnumber: str = "",
        suspended: bool = False,
        auth: str = "manual",
    ) -> int:
        """Create a user (no validation: that is ``core_user_create_users``' job)."""
        user_id = self._t.next_user_id
        self._t.next_user_id += 1
        self._t.next_context_id += 1
        self._t.users[user_id] = User(
            user_id,
            username,
            email or f"{username}@example.com",
            firstname,
            lastname,
            idnumber,
            auth,
            suspended,
        )
        return user_id

    def add_course(
        self,
        shortname: str,
        fullname: str | None = None,
        *,
        idnumber: str = "",
        categoryid: int = 1,
        manual: ManualInstance = "enabled",
        extra: bool = True,
    ) -> int:
        """Create a course; ``extra`` adds the disabled guest and self instances."""
        course_id = self._t.next_course_id
        self._t.next_course_id += 1
        contextid = self._t.next_context_id
        self._t.next_context_id += 1
        now = self.now()
        startdate = now - now % _DAY_S
        course = Course(
            course_id,
            shortname,
            fullname or shortname,
            idnumber,
            categoryid,
            contextid,
            now,
            startdate,
            startdate + 365 * _DAY_S,
        )
        self._t.courses[course_id] = course
        if extra:
            course.instances = [
                EnrolInstance("manual", 0),
                EnrolInstance("guest", 1),
                EnrolInstance("self", 1),
            ]
        self.set_manual_instance(course_id, manual)
        return course_id

    def set_manual_instance(self, courseid: int, manual: ManualInstance) -> None:
        """Enable, disable or delete the course's manual instance (deleting unenrols)."""
        course = self._t.courses[courseid]
        rest = [i for i in course.instances if i.enrol != "manual"]
        if manual == "absent":
            course.instances = rest
            for userid in list(self._t.enrolments.get(courseid, {})):
                self.unenrol(courseid, userid)
            return
        status = 0 if manual == "enabled" else 1
        course.instances = [EnrolInstance("manual", status), *rest]

    def set_account_suspended(self, userid: int, *, suspended: bool = True) -> None:
        """Suspend or reactivate a user's account (not an enrolment)."""
        self._t.users[userid].suspended = suspended

    def add_token(
        self,
        token: str,
        userid: int,
        *,
        functions: tuple[str, ...] = DEFAULT_SERVICE_FUNCTIONS,
        assignable_roles: frozenset[int] = WSCLIENT_ASSIGNABLE_ROLES,
    ) -> Token:
        """Issue a token for ``userid`` on a service with ``functions``."""
        issued = Token(token, userid, functions, assignable_roles)
        self._t.tokens[token] = issued
        return issued

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

    def courses(self) -> list[Course]:
        """All courses in id order (the front page included)."""
        return list(self._t.courses.values())

    @property
    def notifications(self) -> list[Notification]:
        """Every message sent so far, oldest first."""
        return list(self._t.notifications)

    def roles_of(self, courseid: int, userid: int) -> set[int]:
        """Role ids the user holds in the course."""
        return set(self._t.roles.get(courseid, {}).get(userid, set()))

    def enrolment(self, courseid: int, userid: int) -> UserEnrolment | None:
        """The manual enrolment of the user in the course, if any."""
        return self._t.enrolments.get(courseid, {}).get(userid)

    def enrolments(self, courseid: int) -> list[EnrolmentView]:
        """The course's manual enrolments in user-id order, with role ids."""
        rows = self._t.enrolments.get(courseid, {})
        return [
            EnrolmentView(
                uid,
                ue.status,
                ue.timestart,
                ue.timeend,
                tuple(sorted(self.roles_of(courseid, uid))),
            )
            for uid, ue in sorted(rows.items())
        ]

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
        newer = sum(
            1
            for c in self._t.courses.values()
            if c.categoryid == course.categoryid and c.id >= courseid
        )
        return _CATEGORY_SORTORDER + newer

    def contacts(self, courseid: int) -> list[int]:
        """Course contacts: actively enrolled editing teachers, by user id."""
        holders = self._t.roles.get(courseid, {})
        return sorted(
            uid
            for uid, roles in holders.items()
            if EDITING_TEACHER in roles and self.is_active(courseid, uid)
        )

    # -- writes ----------------------------------------------------------------
    def enrol(
        self,
        courseid: int,
        userid: int,
        roleid: int,
        *,
        timestart: int = 0,
        timeend: int = 0,
        status: int = 0,
    ) -> None:
        """``enrol_plugin::enrol_user`` on the manual instance, then the welcome hook."""
        rows = self._t.enrolments.setdefault(courseid, {})
        rows[userid] = UserEnrolment(status, timestart, timeend)
        if roleid:
            self._t.roles.setdefault(courseid, {}).setdefault(userid, set()).add(roleid)
        course = self._t.courses[courseid]
        contact = next((c for c in self.contacts(courseid) if c != userid), None)
        if contact is not None:
            self._t.notifications.append(
                Notification(userid, contact, courseid, f"Welcome to {course.fullname}")
            )

    def unenrol(self, courseid: int, userid: int) -> None:
        """``unenrol_user``: drop the enrolment and, being the last one, all roles."""
        self._t.enrolments.get(courseid, {}).pop(userid, None)
        self._t.roles.get(courseid, {}).pop(userid, None)

    # -- backup / transactions -------------------------------------------------
    def snapshot(self) -> StateSnapshot:
        """A deep copy of every table (tokens included), like a database backup."""
        return StateSnapshot(copy.deepcopy(self._t))

    def restore(self, snapshot: StateSnapshot) -> None:
        """Put every table back as it was at ``snapshot`` (reusable)."""
        self._t = copy.deepcopy(snapshot.tables)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A delegated transaction: any exception rolls every table back."""
        saved = self.snapshot()
        try:
            yield
        except BaseException:
            self.restore(saved)
            raise
