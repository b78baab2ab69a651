"""``core_user_update_users``: each user updated in its own transaction, refusals as warnings.

Recorded (sequence 4): the answer is ``{"warnings": [...]}``; a user that cannot
be updated is reported as ``{item: "user", itemid, warningcode, message}`` while
the others are updated; a new e-mail is refused when it is not an address
(``useremailinvalid``) or another account has it in any case
(``useremailduplicate`` "Duplicate address"); an unknown id is ``invaliduserid``.
Only the fields enrolstream sends (names, e-mail, suspended, idnumber) change
the simulated row; the others are accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Multiple, Required, Single, Value, clean_param
from sandbox.moodle_sim.site import ADMIN_USER_ID, GUEST_USER_ID

__all__ = ["FUNCTIONS", "update_users"]

_OPT: Required = "optional"
#: Request keys that change the simulated ``{user}`` row.
_STORED = ("firstname", "lastname", "middlename", "email", "idnumber", "suspended")


class _Refused(Exception):
    """One user's update refused: becomes a warning, the others go on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _check(ctx: CallContext, row: dict[str, Any]) -> None:
    user = ctx.state.user(row["id"])
    if user is None:
        raise _Refused("invaliduserid", "Invalid user ID")
    if user.id == ADMIN_USER_ID and not ctx.is_admin:
        raise _Refused("usernotupdatedadmin", "Cannot update admin accounts")
    if user.id == GUEST_USER_ID:
        raise _Refused("usernotupdatedguest", "Cannot update guest account")
    email = row.get("email")
    if email is not None and email != user.email:
        if not clean_param(email, "email"):
            raise _Refused("useremailinvalid", "error/useremailinvalid")
        taken = {u.email.lower() for u in ctx.state.users() if u.id != user.id}
        if email.lower() in taken:
            raise _Refused("useremailduplicate", "Duplicate address")


def update_users(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Update every user it can; one warning per user it cannot."""
    warnings = []
    for row in params["users"]:
        try:
            with ctx.state.transaction():
                _check(ctx, row)
                changes = {key: row[key] for key in _STORED if key in row}
                ctx.state.update_user(row["id"], changes)
        except _Refused as refused:
            warnings.append(
                {
                    "item": "user",
                    "itemid": row["id"],
                    "warningcode": refused.code,
                    "message": refused.message,
                }
            )
    return {"warnings": warnings}


def _v(kind: str, required: Required = "optional") -> Value:
    return Value(kind, required)


_UPDATED_USER = Single(
    {
        "id": _v("int", "required"),
        "username": _v("username"),
        "auth": _v("plugin"),
        "suspended": _v("bool"),
        "password": _v("raw"),
        "firstname": _v("notags"),
        "lastname": _v("notags"),
        "email": _v("raw_trimmed"),
        "maildisplay": _v("int"),
        "city": _v("notags"),
        "country": _v("alpha"),
        "timezone": _v("raw"),
        "description": _v("raw"),
        "userpicture": _v("int"),
        "firstnamephonetic": _v("notags"),
        "lastnamephonetic": _v("notags"),
        "middlename": _v("notags"),
        "alternatename": _v("notags"),
        "interests": _v("text"),
        "idnumber": _v("raw"),
        "institution": _v("text"),
        "department": _v("text"),
        "phone1": _v("notags"),
        "phone2": _v("notags"),
        "address": _v("text"),
        "lang": _v("safedir"),
        "calendartype": _v("plugin"),
        "theme": _v("plugin"),
        "mailformat": _v("int"),
        "customfields": Multiple(
            Single({"type": Value("alphanumext"), "value": Value("raw")}), _OPT
        ),
        "preferences": Multiple(
            Single({"type": Value("raw"), "value": Value("raw")}), _OPT
        ),
    }
)

FUNCTIONS: dict[str, WsFunction] = {
    "core_user_update_users": WsFunction(
        "core_user_update_users",
        Single({"users": Multiple(_UPDATED_USER)}),
        Single(
            {
                "warnings": Multiple(
                    Single(
                        {
                            "item": _v("text"),
                            "itemid": _v("int"),
                            "warningcode": _v("alphanum", "required"),
                            "message": _v("raw", "required"),
                        }
                    ),
                    _OPT,
                )
            }
        ),
        update_users,
        rows_param="users",
    )
}
