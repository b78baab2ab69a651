"""``core_user_get_users_by_field``, ``core_user_create_users`` and the user shape.

``user_get_user_details`` only fills fields that have a value, and the JSON
encoder drops absent optional keys, so JSON answers omit address, phone, city
… while XML answers list them as null (see ``get_users_by_field_xml``).
Lookups are exact and case-sensitive; ``idnumber`` is not unique.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import (
    Description,
    Multiple,
    Required,
    Single,
    Value,
    clean_param,
)
from sandbox.moodle_sim.site import INTERNAL_AUTH_PLUGINS, NO_NEW_USERS_AUTH
from sandbox.moodle_sim.state import User

_OPT: Required = "optional"
_NAME_VALUE = Multiple(Single({"name": Value("raw"), "value": Value("raw")}), _OPT)


def user_keys(*, course: bool) -> dict[str, Description]:
    """``user_description`` keys, or the participant keys of get_enrolled_users."""
    head: dict[str, Description] = {
        "id": Value("int"),
        "username": Value("raw", _OPT),
        "firstname": Value("notags", _OPT),
        "lastname": Value("notags", _OPT),
        "fullname": Value("notags"),
        "email": Value("text", _OPT),
        "address": Value("text", _OPT),
        "phone1": Value("notags", _OPT),
        "phone2": Value("notags", _OPT),
        "department": Value("text", _OPT),
        "institution": Value("text", _OPT),
        "idnumber": Value("raw", _OPT),
        "interests": Value("text", _OPT),
        "firstaccess": Value("int", _OPT),
        "lastaccess": Value("int", _OPT),
    }
    account: dict[str, Description] = {
        "auth": Value("plugin", _OPT),
        "suspended": Value("bool", _OPT),
        "confirmed": Value("bool", _OPT),
        "lang": Value("safedir", _OPT),
        "calendartype": Value("plugin", _OPT),
        "theme": Value("plugin", _OPT),
        "timezone": Value("raw", _OPT),
        "mailformat": Value("int", _OPT),
        "trackforums": Value("int", _OPT),
    }
    tail: dict[str, Description] = {
        "description": Value("raw", _OPT),
        "descriptionformat": Value("int", _OPT),
        "city": Value("notags", _OPT),
        "country": Value("alpha", _OPT),
        "profileimageurlsmall": Value("raw", _OPT),
        "profileimageurl": Value("raw", _OPT),
        "customfields": Multiple(
            Single(
                {
                    "type": Value("alphanumext"),
                    "value": Value("raw"),
                    "name": Value("raw"),
                    "shortname": Value("raw"),
                }
            ),
            _OPT,
        ),
    }
    if not course:
        return {**head, **account, **tail, "preferences": _NAME_VALUE}
    return {**head, "lastcourseaccess": Value("int", _OPT), **tail}


USER_DETAIL_KEYS = user_keys(course=False)


def user_details(
    ctx: CallContext, user: User, *, admin_fields: bool, email: bool = True
) -> dict[str, Any]:
    """``user_get_user_details`` for a caller allowed to see identity fields.

    ``email``: whether the caller may see the address (outside a course: only a
    token whose user has ``moodle/site:viewuseridentity``; ``Token.sees_emails``).
    """
    details: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": f"{user.firstname} {user.lastname}",
        "email": user.email,
        "department": user.department,
        "idnumber": user.idnumber,
        "firstaccess": 0,
        "lastaccess": 0,
    }
    if not email:
        del details["email"]
    if admin_fields:
        details |= {
            "auth": user.auth,
            "suspended": user.suspended,
            "confirmed": True,
            "lang": user.lang,
            "theme": "",
            "timezone": "99",
            "mailformat": 1,
            "trackforums": 0,
        }
    details["profileimageurlsmall"] = ctx.user_picture("f2")
    details["profileimageurl"] = ctx.user_picture("f1")
    return details


_LOOKUP_CLEANING = {
    "id": "int",
    "idnumber": "raw",
    "username": "username",
    "email": "email",
}


def get_users_by_field(
    ctx: CallContext, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Users whose field equals one of the values exactly; unknown values are absent."""
    field = params["field"]
    cleaning = _LOOKUP_CLEANING.get(field)
    if cleaning is None:
        raise errors.coding_error("invalid field parameter")
    wanted: set[str] = set()
    for value in params["values"]:
        cleaned = value.strip() if cleaning == "int" else clean_param(value, cleaning)
        if cleaning == "int" and not cleaned.isdigit():
            cleaned = "0"
        if cleaned != value:
            raise errors.invalid_parameter(
                f"The field '{field}' value is invalid: {value}(cleaned value: {cleaned})"
            )
        wanted.add(value)
    # Moodle returns a user only if the searched field is in their details: by
    # e-mail, nobody, for a token that may not see e-mails (sequence 4).
    email = ctx.token.sees_emails
    if field == "email" and not email:
        return []
    return [
        user_details(ctx, user, admin_fields=True, email=email)
        for user in ctx.state.users()
        if str(getattr(user, field)) in wanted
    ]


def _check_auth(rows: list[dict[str, Any]], installed: tuple[str, ...]) -> None:
    """``PARAM_AUTH``: a plugin that is not installed fails parameter validation."""
    for row in rows:
        if row["auth"] not in installed:
            raise errors.invalid_parameter(
                "users => Invalid parameter value detected: auth => Invalid parameter "
                "value detected: Invalid external api parameter: the value is "
                f'"{row["auth"]}", the server was expecting "auth" type'
            )


def _check_new_user(row: dict[str, Any], usernames: set[str], emails: set[str]) -> None:
    """The checks of ``core_user_create_users``, in Moodle's order."""
    for name in ("username", "firstname", "lastname"):
        if not str(row[name]).strip():
            raise errors.invalid_parameter(f"The field {name} cannot be blank")
    if row["username"] in usernames:
        raise errors.invalid_parameter(f"Username already exists: {row['username']}")
    if row["auth"] in NO_NEW_USERS_AUTH:
        raise errors.invalid_parameter(f"Invalid authentication type: {row['auth']}")
    internal = row["auth"] in INTERNAL_AUTH_PLUGINS
    if internal and not row.get("password") and not row.get("createpassword"):
        raise errors.invalid_parameter(
            "Invalid password: you must provide a password, or set createpassword."
        )
    email = row["email"]
    if not clean_param(email, "email"):
        raise errors.invalid_parameter(f"Email address is invalid: {email}")
    if email.lower() in emails:
        raise errors.invalid_parameter(f"Email address already exists: {email}")


def _password_state(row: dict[str, Any]) -> dict[str, object]:
    """What creating the row leaves in the password column and preferences."""
    if row["auth"] not in INTERNAL_AUTH_PLUGINS:
        return {
            "credential": "not cached",
            "forcepasswordchange": bool(row.get("createpassword")),
        }
    # createpassword: Moodle makes a password (mailed after the commit) and
    # forces a change at the first login.
    return {
        "credential": "a hash",
        "forcepasswordchange": bool(row.get("createpassword")),
    }


def create_users(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Create all users or none; returns ``[{id, username}]`` in request order."""
    created = []
    _check_auth(params["users"], ctx.state.site.auth_plugins)
    # Taken names and addresses, gathered once per call (not per row) and
    # grown with each row, so a later row sees the earlier rows' users.
    usernames = {u.username for u in ctx.state.users()}
    emails = {u.email.lower() for u in ctx.state.users()}
    with ctx.state.transaction():
        for row in params["users"]:
            _check_new_user(row, usernames, emails)
            userid = ctx.state.add_user(
                row["username"],
                email=row["email"],
                firstname=row["firstname"],
                lastname=row["lastname"],
                idnumber=row["idnumber"],
                auth=row["auth"],
            )
            ctx.state.update_user(
                userid,
                {"middlename": row.get("middlename", ""), **_password_state(row)},
            )
            usernames.add(row["username"])
            emails.add(row["email"].lower())
            created.append({"id": userid, "username": row["username"]})
    return created


_NEW_USER = Single(
    {
        "createpassword": Value("bool", _OPT),
        "username": Value("username"),
        "auth": Value("plugin", "default", "manual"),
        "password": Value("raw", _OPT),
        "firstname": Value("notags"),
        "lastname": Value("notags"),
        "email": Value("raw_trimmed"),
        "maildisplay": Value("int", _OPT),
        "city": Value("notags", _OPT),
        "country": Value("alpha", _OPT),
        "timezone": Value("raw", _OPT),
        "description": Value("raw", _OPT),
        "firstnamephonetic": Value("notags", _OPT),
        "lastnamephonetic": Value("notags", _OPT),
        "middlename": Value("notags", _OPT),
        "alternatename": Value("notags", _OPT),
        "interests": Value("text", _OPT),
        "idnumber": Value("raw", "default", ""),
        "institution": Value("text", _OPT),
        "department": Value("text", _OPT),
        "phone1": Value("notags", _OPT),
        "phone2": Value("notags", _OPT),
        "address": Value("text", _OPT),
        "lang": Value("safedir", _OPT),
        "calendartype": Value("plugin", _OPT),
        "theme": Value("plugin", _OPT),
        "mailformat": Value("int", _OPT),
        "customfields": Multiple(
            Single({"type": Value("alphanumext"), "value": Value("raw")}), _OPT
        ),
        "preferences": Multiple(
            Single({"type": Value("raw"), "value": Value("raw")}), _OPT
        ),
    }
)

FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_user_get_users_by_field",
            Single({"field": Value("alpha"), "values": Multiple(Value("raw"))}),
            Multiple(Single(USER_DETAIL_KEYS)),
            get_users_by_field,
        ),
        WsFunction(
            "core_user_create_users",
            Single({"users": Multiple(_NEW_USER)}),
            Multiple(Single({"id": Value("int"), "username": Value("raw")})),
            create_users,
            rows_param="users",
        ),
    )
}
