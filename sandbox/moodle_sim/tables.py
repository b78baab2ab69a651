"""The rows of the simulated Moodle database and the tables that hold them.

Besides Moodle's own tables, ``Tables`` keeps five indexes so that per-call
work stays proportional to the call, not to the site: the courses a user has a
manual enrolment in, the editing teachers of each course, each category's
course ids (in creation order, which is id order), the course of each
course context and each course's group ids. Its write methods are the
only writers: each keeps tables and indexes in step and logs every change in
the ``UndoLog`` it is given. Backups copy the indexes with the tables.
Moodle's behaviour (clock, defaults, welcome messages) is ``MoodleState``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sandbox.moodle_sim.site import EDITING_TEACHER, Token
from sandbox.moodle_sim.undo import UndoLog

ManualInstance = Literal["enabled", "disabled", "absent"]


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
    middlename: str = ""
    #: What the password column holds, as the recordings say it: ``a hash``,
    #: ``empty`` or ``not cached`` (an external auth plugin's account).
    credential: str = "a hash"
    #: The ``auth_forcepasswordchange`` preference (set by ``createpassword``).
    forcepasswordchange: bool = False


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
    visible: int = 1
    #: The token's role is prevented ``moodle/course:enrolreview`` in this course
    #: (a role override, sequence 6): its enrolment statuses may not be read.
    enrolreview_prevented: bool = False

    def manual(self) -> EnrolInstance | None:
        """The course's manual instance, enabled or not."""
        return next((i for i in self.instances if i.enrol == "manual"), None)


@dataclass
class Category:
    """A row of ``{course_categories}`` (top-level ones: ``parent`` 0)."""

    id: int
    name: str
    idnumber: str | None
    parent: int
    sortorder: int
    contextid: int
    timemodified: int
    description: str = ""


@dataclass
class Group:
    """A row of ``{groups}``: names and idnumbers are unique within the course."""

    id: int
    courseid: int
    name: str
    idnumber: str
    description: str = ""
    descriptionformat: int = 1


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


@dataclass
class Tables:
    """Every table of one site, plus the indexes derived from them.

    Role sets are never changed in place: a write replaces the set, so an
    undo can put the old one back.
    """

    users: dict[int, User] = field(default_factory=dict)
    courses: dict[int, Course] = field(default_factory=dict)
    enrolments: dict[int, dict[int, UserEnrolment]] = field(default_factory=dict)
    roles: dict[int, dict[int, frozenset[int]]] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    tokens: dict[str, Token] = field(default_factory=dict)
    next_user_id: int = 1
    next_course_id: int = 1
    next_context_id: int = 2
    categories: dict[int, Category] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)
    #: groupid -> its members' user ids (``{groups_members}``).
    group_members: dict[int, frozenset[int]] = field(default_factory=dict)
    next_category_id: int = 1
    next_group_id: int = 1
    # Indexes: userid -> courses with a manual enrolment; courseid -> holders
    # of the editing teacher role; categoryid -> course ids, ascending;
    # course context id -> course id.
    user_courses: dict[int, set[int]] = field(default_factory=dict)
    course_teachers: dict[int, set[int]] = field(default_factory=dict)
    category_courses: dict[int, list[int]] = field(default_factory=dict)
    context_courses: dict[int, int] = field(default_factory=dict)
    #: courseid -> its group ids, ascending (creation order).
    course_groups: dict[int, list[int]] = field(default_factory=dict)

    def take_ids(
        self, log: UndoLog, counter: str, *, durable: bool = False
    ) -> tuple[int, int]:
        """Take the next id of ``counter`` (a ``next_*_id`` field) and a context id.

        ``durable``: as a PostgreSQL sequence, the ids stay taken when the
        transaction rolls back (recorded for courses and groups, sequence 5).
        """
        new_id, contextid = getattr(self, counter), self.next_context_id
        if durable:
            setattr(self, counter, new_id + 1)
            self.next_context_id = contextid + 1
        else:
            log.set_attr(self, counter, new_id + 1)
            log.set_attr(self, "next_context_id", contextid + 1)
        return new_id, contextid

    def insert_course(self, log: UndoLog, course: Course) -> None:
        """Add a course with an id above every existing one."""
        log.set_item(self.courses, course.id, course)
        log.set_item(self.context_courses, course.contextid, course.id)
        if course.categoryid not in self.category_courses:
            log.set_item(self.category_courses, course.categoryid, [])
        log.append(self.category_courses[course.categoryid], course.id)

    def insert_category(self, log: UndoLog, category: Category) -> None:
        """Add a category with an id above every existing one."""
        log.set_item(self.categories, category.id, category)

    def insert_group(self, log: UndoLog, group: Group) -> None:
        """Add a group to its course."""
        log.set_item(self.groups, group.id, group)
        if group.courseid not in self.course_groups:
            log.set_item(self.course_groups, group.courseid, [])
        log.append(self.course_groups[group.courseid], group.id)

    def set_membership(
        self, log: UndoLog, groupid: int, userid: int, *, member: bool
    ) -> None:
        """Add or remove one member of a group (a no-op when already so)."""
        held = self.group_members.get(groupid, frozenset())
        if (userid in held) == member:
            return
        changed = held | {userid} if member else held - {userid}
        if changed:
            log.set_item(self.group_members, groupid, changed)
        else:
            log.pop_item(self.group_members, groupid)

    def put_enrolment(
        self, log: UndoLog, courseid: int, userid: int, row: UserEnrolment
    ) -> None:
        """Insert or replace the user's manual enrolment row in the course."""
        if courseid not in self.enrolments:
            log.set_item(self.enrolments, courseid, {})
        log.set_item(self.enrolments[courseid], userid, row)
        if userid not in self.user_courses:
            log.set_item(self.user_courses, userid, set())
        log.add(self.user_courses[userid], courseid)

    def grant(self, log: UndoLog, courseid: int, userid: int, roleid: int) -> None:
        """Add a role assignment (a no-op when the user holds it already)."""
        if courseid not in self.roles:
            log.set_item(self.roles, courseid, {})
        held = self.roles[courseid].get(userid, frozenset())
        if roleid not in held:
            log.set_item(self.roles[courseid], userid, held | {roleid})
        if roleid == EDITING_TEACHER:
            if courseid not in self.course_teachers:
                log.set_item(self.course_teachers, courseid, set())
            log.add(self.course_teachers[courseid], userid)

    def revoke(self, log: UndoLog, courseid: int, userid: int, roleid: int) -> None:
        """Remove one role assignment (a no-op when the user does not hold it)."""
        held = self.roles.get(courseid, {}).get(userid, frozenset())
        if roleid not in held:
            return
        if held == {roleid}:
            log.pop_item(self.roles[courseid], userid)
        else:
            log.set_item(self.roles[courseid], userid, held - {roleid})
        if roleid == EDITING_TEACHER and courseid in self.course_teachers:
            log.discard(self.course_teachers[courseid], userid)

    def drop_enrolment(self, log: UndoLog, courseid: int, userid: int) -> None:
        """Remove the enrolment row, every role and group membership in the course."""
        for groupid in self.course_groups.get(courseid, ()):
            self.set_membership(log, groupid, userid, member=False)
        if courseid in self.enrolments:
            log.pop_item(self.enrolments[courseid], userid)
        if courseid in self.roles:
            log.pop_item(self.roles[courseid], userid)
        if userid in self.user_courses:
            log.discard(self.user_courses[userid], courseid)
        if courseid in self.course_teachers:
            log.discard(self.course_teachers[courseid], userid)


@dataclass(frozen=True)
class StateSnapshot:
    """An opaque deep copy of every table, taken by ``MoodleState.snapshot``.

    Two snapshots compare equal when the sites they copied hold the same data.
    """

    tables: Tables
