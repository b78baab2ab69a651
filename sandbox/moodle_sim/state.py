"""The simulated Moodle database: users, courses, enrolments, roles, messages, tokens.

Pure and in memory: no I/O and no permission checks (those live in the web
service functions). The model follows Moodle's tables where clients can tell
the difference:

* ``user.idnumber`` is not unique; ``user.suspended`` (account) is separate
  from ``user_enrolments.status`` (enrolment, 0 active / 1 suspended);
* a course has at most one manual instance, enabled, disabled or absent; new
  courses also get disabled guest and self instances;
* role assignments are a set per (course, user), kept apart from enrolments:
  enrolling with another role adds one, ``core_role_*`` add or remove one
  without touching the enrolment (a user may hold a role without being
  enrolled, or be enrolled with none), unenrolling removes the enrolment and
  every role in the course;
* enrolling into a course that has a contact (an actively enrolled editing
  teacher) sends "Welcome to <fullname>" to the enrolled user, on every call;
  changing an enrolment's status alone (``set_enrolment_status``, the companion
  plugin's way) sends nothing.

``transaction()`` rolls a failed batch back through an undo log (see
``undo.py``): its cost follows the rows the batch wrote, not the site.
``snapshot``/``restore`` copy all tables, to simulate "restored from
yesterday's backup". ``save``/``load`` keep them in a file (``persist.py``),
as a database outlives the web server that is stopped and started again.

The read methods live in ``reads.py``, the row types and the index-keeping
writes in ``tables.py``, the site constants in ``site.py``; the names callers
have always imported from here are re-exported.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sandbox.moodle_sim import persist
from sandbox.moodle_sim.reads import StateReads
from sandbox.moodle_sim.site import (
    ADMIN_ASSIGNABLE_ROLES,
    ADMIN_USER_ID,
    DEFAULT_SERVICE_FUNCTIONS,
    EDITING_TEACHER,
    GUEST_USER_ID,
    ROLE_SHORTNAMES,
    SITE_COURSE_ID,
    WSCLIENT_ASSIGNABLE_ROLES,
    WSCLIENT_USER_ID,
    SiteConfig,
    Token,
)
from sandbox.moodle_sim.structure import StructureWrites, ensure_default_category
from sandbox.moodle_sim.tables import (
    Category,
    Course,
    EnrolInstance,
    EnrolmentView,
    Group,
    ManualInstance,
    Notification,
    StateSnapshot,
    Tables,
    User,
    UserEnrolment,
)
from sandbox.moodle_sim.undo import UndoLog

__all__ = [
    "ADMIN_ASSIGNABLE_ROLES",
    "ADMIN_USER_ID",
    "DEFAULT_SERVICE_FUNCTIONS",
    "EDITING_TEACHER",
    "GUEST_USER_ID",
    "ROLE_SHORTNAMES",
    "SITE_COURSE_ID",
    "WSCLIENT_ASSIGNABLE_ROLES",
    "WSCLIENT_USER_ID",
    "Category",
    "Course",
    "EnrolInstance",
    "EnrolmentView",
    "Group",
    "ManualInstance",
    "MoodleState",
    "Notification",
    "SiteConfig",
    "StateSnapshot",
    "Token",
    "User",
    "UserEnrolment",
]

_DAY_S = 86400


class MoodleState(StateReads, StructureWrites):
    """The in-memory Moodle site; starts with guest (1), admin (2), wsclient (3)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        site: SiteConfig | None = None,
        tables: Tables | None = None,
    ) -> None:
        """A new site, or (``tables``) one as it was saved, taken over as it is."""
        self.clock = clock
        self.site = site or SiteConfig()
        self._log = UndoLog()
        self._group_cache = {}
        if tables is not None:
            self._t = tables
            ensure_default_category(self._t, self.site)
            return
        self._t = Tables()
        ensure_default_category(self._t, self.site)
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
    @property
    def next_context_id(self) -> int:
        """The context id the next user or course gets (settable to match a site)."""
        return self._t.next_context_id

    @next_context_id.setter
    def next_context_id(self, value: int) -> None:
        self._log.set_attr(self._t, "next_context_id", value)

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
        user_id, _ = self._t.take_ids(self._log, "next_user_id")
        user = User(
            user_id,
            username,
            email or f"{username}@example.com",
            firstname,
            lastname,
            idnumber,
            auth,
            suspended,
        )
        self._log.set_item(self._t.users, user_id, user)
        return user_id

    def update_user(self, userid: int, changes: Mapping[str, object]) -> None:
        """Set fields of a ``{user}`` row (``user_update_user``: no validation here)."""
        user = self._t.users[userid]
        for name, value in changes.items():
            if not hasattr(user, name):
                raise AttributeError(f"the user table has no field {name!r}")
            self._log.set_attr(user, name, value)

    def add_course(
        self,
        shortname: str,
        fullname: str | None = None,
        *,
        idnumber: str = "",
        categoryid: int = 1,
        manual: ManualInstance = "enabled",
        extra: bool = True,
        visible: bool = True,
    ) -> int:
        """Create a course; ``extra`` adds the disabled guest and self instances."""
        course_id, contextid = self._t.take_ids(
            self._log, "next_course_id", durable=True
        )
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
            visible=int(visible),
        )
        if extra:
            course.instances = [
                EnrolInstance("manual", 0),
                EnrolInstance("guest", 1),
                EnrolInstance("self", 1),
            ]
        self._t.insert_course(self._log, course)
        self.set_manual_instance(course_id, manual)
        return course_id

    def set_manual_instance(self, courseid: int, manual: ManualInstance) -> None:
        """Enable, disable or delete the course's manual instance (deleting unenrols)."""
        course = self._t.courses[courseid]
        rest = [i for i in course.instances if i.enrol != "manual"]
        if manual == "absent":
            self._log.set_attr(course, "instances", rest)
            for userid in list(self._t.enrolments.get(courseid, {})):
                self.unenrol(courseid, userid)
            return
        status = 0 if manual == "enabled" else 1
        self._log.set_attr(
            course, "instances", [EnrolInstance("manual", status), *rest]
        )

    def set_course_visible(self, courseid: int, *, visible: bool) -> None:
        """Show or hide a course (``core_course_update_courses`` ``visible``)."""
        self._log.set_attr(self._t.courses[courseid], "visible", int(visible))

    def set_account_suspended(self, userid: int, *, suspended: bool = True) -> None:
        """Suspend or reactivate a user's account (not an enrolment)."""
        self._log.set_attr(self._t.users[userid], "suspended", suspended)

    def add_token(
        self,
        token: str,
        userid: int,
        *,
        functions: tuple[str, ...] = DEFAULT_SERVICE_FUNCTIONS,
        assignable_roles: frozenset[int] = WSCLIENT_ASSIGNABLE_ROLES,
        sees_emails: bool = True,
    ) -> Token:
        """Issue a token for ``userid`` on a service with ``functions``."""
        issued = Token(token, userid, functions, assignable_roles, sees_emails)
        self._log.set_item(self._t.tokens, token, issued)
        return issued

    def revoke_token(self, token: str) -> Token | None:
        """Delete a token, as an administrator does (its calls then fail invalidtoken)."""
        return self._log.pop_item(self._t.tokens, token)

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
        t = self._t
        t.put_enrolment(
            self._log, courseid, userid, UserEnrolment(status, timestart, timeend)
        )
        if roleid:
            t.grant(self._log, courseid, userid, roleid)
        course = t.courses[courseid]
        contact = next((c for c in self.contacts(courseid) if c != userid), None)
        if contact is not None:
            self._log.append(
                t.notifications,
                Notification(
                    userid, contact, courseid, f"Welcome to {course.fullname}"
                ),
            )

    def set_enrolment_status(self, courseid: int, userid: int, status: int) -> None:
        """``enrol_plugin::update_user_enrol`` for the status: no hook, no message.

        Only an existing enrolment changes (not enrolled: nothing happens); its
        dates and roles stay.
        """
        row = self._t.enrolments.get(courseid, {}).get(userid)
        if row is None or row.status == status:
            return
        self._t.put_enrolment(
            self._log, courseid, userid, dataclasses.replace(row, status=status)
        )

    def assign_role(self, courseid: int, userid: int, roleid: int) -> None:
        """``role_assign`` in the course context: no enrolment needed, no message sent."""
        self._t.grant(self._log, courseid, userid, roleid)

    def unassign_role(self, courseid: int, userid: int, roleid: int) -> None:
        """``role_unassign`` in the course context; the enrolment, if any, stays."""
        self._t.revoke(self._log, courseid, userid, roleid)

    def unenrol(self, courseid: int, userid: int) -> None:
        """``unenrol_user``: drop the enrolment and, being the last one, all roles."""
        self._t.drop_enrolment(self._log, courseid, userid)

    # -- backup / transactions -------------------------------------------------
    def snapshot(self) -> StateSnapshot:
        """A deep copy of every table (tokens included), like a database backup."""
        return StateSnapshot(copy.deepcopy(self._t))

    def restore(self, snapshot: StateSnapshot) -> None:
        """Put every table back as it was at ``snapshot`` (reusable)."""
        # Through the log: a restore inside a failed transaction is undone too.
        self._log.set_attr(self, "_t", copy.deepcopy(snapshot.tables))
        self._group_cache.clear()

    def save(self, path: Path) -> None:
        """Write every table and the site settings to ``path`` (atomic, mode 0600)."""
        if self._log.pending:
            raise RuntimeError("cannot save a transaction's uncommitted writes")
        persist.save(path, self.site, self._t)

    @classmethod
    def load(cls, path: Path, *, clock: Callable[[], float] = time.time) -> MoodleState:
        """The site ``save`` wrote to ``path``; ``persist.StateFileError`` if it is not one."""
        site, tables = persist.load(path)
        return cls(clock=clock, site=site, tables=tables)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A delegated transaction: any exception undoes every write made in it."""
        with self._log.transaction():
            yield
