"""The simulated site on disk: every table as JSON, written atomically, mode 0600.

A saved file is Moodle's database as a stopped site leaves it: users, courses
and their enrolment instances, enrolments, role assignments, messages sent,
tokens, the id counters and the indexes ``Tables`` keeps, plus the site
settings. ``decode`` gives back tables equal to those saved (dict order
included), so a site loaded from a file behaves exactly as the one saved.

The file is written to a temporary file in the same directory (created 0600,
as it holds tokens and student data), flushed to disk and renamed over the
target: a reader, or a restart after a crash mid-save, sees the old file or the
new one, never half of one. JSON rather than pickle: another process (a test, a
benchmark) can read it without trusting it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sandbox.moodle_sim.site import SiteConfig, Token
from sandbox.moodle_sim.tables import (
    Category,
    Course,
    EnrolInstance,
    Group,
    Notification,
    Tables,
    User,
    UserEnrolment,
)

FORMAT = "enrolstream-moodle-sim-state"
VERSION = 1


class StateFileError(ValueError):
    """The file is not a saved simulator state this version can read."""


def encode(site: SiteConfig, tables: Tables) -> dict[str, Any]:
    """Everything a restart must keep, as JSON-ready data (dict keys as strings)."""
    t = tables
    return {
        "format": FORMAT,
        "version": VERSION,
        "site": dataclasses.asdict(site),
        "users": [dataclasses.asdict(user) for user in t.users.values()],
        "courses": [dataclasses.asdict(course) for course in t.courses.values()],
        "enrolments": {
            str(courseid): {
                str(userid): dataclasses.asdict(row) for userid, row in rows.items()
            }
            for courseid, rows in t.enrolments.items()
        },
        "roles": {
            str(courseid): {
                str(userid): sorted(roleids) for userid, roleids in held.items()
            }
            for courseid, held in t.roles.items()
        },
        "notifications": [dataclasses.asdict(n) for n in t.notifications],
        "tokens": [
            {
                **dataclasses.asdict(token),
                "assignable_roles": sorted(token.assignable_roles),
            }
            for token in t.tokens.values()
        ],
        "next_user_id": t.next_user_id,
        "next_course_id": t.next_course_id,
        "next_context_id": t.next_context_id,
        "user_courses": _int_sets(t.user_courses),
        "course_teachers": _int_sets(t.course_teachers),
        "category_courses": {str(k): list(v) for k, v in t.category_courses.items()},
        "context_courses": {str(k): v for k, v in t.context_courses.items()},
        "categories": [dataclasses.asdict(c) for c in t.categories.values()],
        "groups": [dataclasses.asdict(g) for g in t.groups.values()],
        "group_members": _int_sets({k: set(v) for k, v in t.group_members.items()}),
        "course_groups": {str(k): list(v) for k, v in t.course_groups.items()},
        "next_category_id": t.next_category_id,
        "next_group_id": t.next_group_id,
    }


def decode(data: dict[str, Any]) -> tuple[SiteConfig, Tables]:
    """The site settings and tables ``encode`` was given."""
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise StateFileError(
            f"not a saved simulator site: format {data.get('format')!r} version "
            f"{data.get('version')!r}, expected {FORMAT!r} version {VERSION}"
        )
    courses = []
    for row in data["courses"]:
        instances = [EnrolInstance(**i) for i in row["instances"]]
        courses.append(Course(**{**row, "instances": instances}))
    tables = Tables(
        users={row["id"]: User(**row) for row in data["users"]},
        courses={course.id: course for course in courses},
        enrolments={
            int(courseid): {int(u): UserEnrolment(**row) for u, row in rows.items()}
            for courseid, rows in data["enrolments"].items()
        },
        roles={
            int(courseid): {int(u): frozenset(ids) for u, ids in held.items()}
            for courseid, held in data["roles"].items()
        },
        notifications=[Notification(**row) for row in data["notifications"]],
        tokens={
            row["token"]: Token(
                row["token"],
                row["userid"],
                tuple(row["functions"]),
                frozenset(row["assignable_roles"]),
                row.get("sees_emails", True),
            )
            for row in data["tokens"]
        },
        next_user_id=data["next_user_id"],
        next_course_id=data["next_course_id"],
        next_context_id=data["next_context_id"],
        user_courses={int(k): set(v) for k, v in data["user_courses"].items()},
        course_teachers={int(k): set(v) for k, v in data["course_teachers"].items()},
        category_courses={int(k): list(v) for k, v in data["category_courses"].items()},
        context_courses={int(k): int(v) for k, v in data["context_courses"].items()},
        # Sites saved before categories and groups were simulated have none.
        categories={row["id"]: Category(**row) for row in data.get("categories", [])},
        groups={row["id"]: Group(**row) for row in data.get("groups", [])},
        group_members={
            int(k): frozenset(v) for k, v in data.get("group_members", {}).items()
        },
        course_groups={
            int(k): list(v) for k, v in data.get("course_groups", {}).items()
        },
        next_category_id=data.get("next_category_id", 1),
        next_group_id=data.get("next_group_id", 1),
    )
    site = data["site"]
    tuples = {
        key: tuple(site[key]) for key in ("plugins", "auth_plugins") if key in site
    }
    return SiteConfig(**{**site, **tuples}), tables


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename; the file is mode 0600."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
        raise
    # The rename itself is durable once the directory is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save(path: Path, site: SiteConfig, tables: Tables) -> None:
    """Write the site to ``path`` atomically (see the module docstring)."""
    write_atomically(path, json.dumps(encode(site, tables), separators=(",", ":")))


def load(path: Path) -> tuple[SiteConfig, Tables]:
    """The site settings and tables saved in ``path``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise StateFileError(f"{path}: not JSON ({error})") from error
    if not isinstance(data, dict):
        raise StateFileError(f"{path}: not a saved simulator state")
    try:
        return decode(data)
    except StateFileError as error:
        raise StateFileError(f"{path}: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise StateFileError(f"{path}: malformed ({error!r})") from error


def _int_sets(index: dict[int, set[int]]) -> dict[str, list[int]]:
    return {str(key): sorted(members) for key, members in index.items()}
