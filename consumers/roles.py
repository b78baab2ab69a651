"""Moodle's standard roles by id, so people read "Student", not "role 5".

A Moodle site creates these roles at install, in this order, so their ids are
the same on nearly every site; a role we do not know reads ``role N``.
"""

from __future__ import annotations

__all__ = ["STANDARD_ROLES", "role_name"]

STANDARD_ROLES: dict[int, str] = {
    1: "Manager",
    2: "Course creator",
    3: "Teacher",
    4: "Non-editing teacher",
    5: "Student",
    6: "Guest",
    7: "Authenticated user",
    8: "Authenticated user on the front page",
}


def role_name(roleid: int) -> str:
    """The role's standard name, or ``role N``."""
    return STANDARD_ROLES.get(roleid, f"role {roleid}")
