"""Categories and groups of the simulated site: their writes, reads and the group cache.

A mixin of ``MoodleState`` (like ``StateReads``): every write goes through the
``Tables`` methods and the undo log, so a failed batch rolls them back.

Moodle serves a course's groups from a cache (``groupdata``), recorded in
sequence 5: a group change clears the course's entry, and a read fills it from
the database *as the current transaction sees it*. So when a batch creates a
group and a later row of the same batch reads the course's groups (every row
checks its idnumber) and then fails, the rollback removes the group from the
database but not from the cache: ``core_group_get_course_groups`` still lists
it and its idnumber stays taken, until any other group change in the course
clears the entry. The cache here is kept outside the undo log to behave so.

Category 1 ("Category 1") exists on every site and, unlike the categories made
later, takes no context id here: the recorded sequences' context ids were
counted without it.
"""

from __future__ import annotations

import dataclasses

from sandbox.moodle_sim.site import SiteConfig
from sandbox.moodle_sim.tables import Category, Group, Tables
from sandbox.moodle_sim.undo import UndoLog

#: Moodle spaces top-level categories' sort orders by this much.
CATEGORY_SORTORDER_STEP = 10000
DEFAULT_CATEGORY = 1


def ensure_default_category(tables: Tables, site: SiteConfig) -> None:
    """Give ``tables`` the site's first category if it has none (new or older file)."""
    if tables.categories:
        return
    tables.categories[DEFAULT_CATEGORY] = Category(
        DEFAULT_CATEGORY,
        site.category_name,
        None,
        0,
        CATEGORY_SORTORDER_STEP,
        0,
        0,
    )
    tables.next_category_id = max(tables.next_category_id, DEFAULT_CATEGORY + 1)


class StructureWrites:
    """Categories and groups (a base of ``MoodleState``)."""

    _t: Tables
    _log: UndoLog
    #: courseid -> the groups a read last cached (outside the undo log).
    _group_cache: dict[int, tuple[Group, ...]]

    def now(self) -> int:
        """The site clock, in whole seconds (``StateReads``)."""
        raise NotImplementedError

    # -- categories ------------------------------------------------------------
    def category(self, categoryid: int) -> Category | None:
        """The category with this id, if any."""
        return self._t.categories.get(categoryid)

    def categories(self) -> list[Category]:
        """Every category, in id order."""
        return list(self._t.categories.values())

    def add_category(self, name: str, *, idnumber: str | None = None) -> int:
        """A new top-level category (its sort order after the last one's)."""
        categoryid, contextid = self._t.take_ids(
            self._log, "next_category_id", durable=True
        )
        last = max((c.sortorder for c in self._t.categories.values()), default=0)
        self._t.insert_category(
            self._log,
            Category(
                categoryid,
                name,
                idnumber,
                0,
                last + CATEGORY_SORTORDER_STEP,
                contextid,
                self.now(),
            ),
        )
        return categoryid

    # -- groups ----------------------------------------------------------------
    def group(self, groupid: int) -> Group | None:
        """The group with this id, if any (read from the database, not the cache)."""
        return self._t.groups.get(groupid)

    def stored_groups(self, courseid: int) -> list[Group]:
        """The course's groups as the database holds them, in id order."""
        return [self._t.groups[g] for g in self._t.course_groups.get(courseid, ())]

    def course_groups(self, courseid: int) -> tuple[Group, ...]:
        """The course's groups as Moodle's cache serves them (see the module doc)."""
        cached = self._group_cache.get(courseid)
        if cached is None:
            ids = self._t.course_groups.get(courseid, ())
            cached = tuple(dataclasses.replace(self._t.groups[g]) for g in ids)
            self._group_cache[courseid] = cached
        return cached

    def add_group(
        self,
        courseid: int,
        name: str,
        *,
        idnumber: str = "",
        description: str = "",
        descriptionformat: int = 1,
    ) -> int:
        """``groups_create_group``: insert the row, clear the course's cache."""
        groupid = self._t.next_group_id
        self._t.next_group_id = groupid + 1  # a sequence: not rolled back
        group = Group(groupid, courseid, name, idnumber, description, descriptionformat)
        self._t.insert_group(self._log, group)
        self._group_cache.pop(courseid, None)
        return groupid

    def group_members(self, groupid: int) -> frozenset[int]:
        """User ids of the group's members."""
        return self._t.group_members.get(groupid, frozenset())

    def groups_of(self, courseid: int, userid: int) -> list[Group]:
        """The user's groups in the course (database rows), by name as Moodle sorts."""
        ids = self._t.course_groups.get(courseid, ())
        mine = [
            self._t.groups[g] for g in ids if userid in self._t.group_members.get(g, ())
        ]
        return sorted(mine, key=lambda g: (g.name, g.id))

    def set_group_member(self, groupid: int, userid: int, *, member: bool) -> None:
        """``groups_add_member`` / ``groups_remove_member`` (no checks here)."""
        self._t.set_membership(self._log, groupid, userid, member=member)
