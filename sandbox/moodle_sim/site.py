"""Site-wide facts of the simulated Moodle: well-known ids, roles, tokens, settings.

The values are those of the recorded site (see ``tests/data/moodle-golden``):
guest (1), admin (2) and wsclient (3) users, the front page as course 1, and a
web service whose wsclient role may assign editingteacher, teacher and student.

A site may have add-on plugins installed (``SiteConfig.plugins``): only the
repository's companion plugin ``local_enrolstream`` is simulated. Its functions
are in no token's service unless the token is issued with them
(``COMPANION_SERVICE_FUNCTIONS``), as an administrator must add it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "core_role_assign_roles",
    "core_role_unassign_roles",
    "core_user_update_users",
    # course shells and groups per section (mapping generate, groups on)
    "core_course_get_categories",
    "core_course_create_categories",
    "core_course_update_courses",
    "core_group_create_groups",
    "core_group_get_course_groups",
    "core_group_add_group_members",
    "core_group_delete_group_members",
)
#: Moodle 5.1's own authentication plugins (the recorded site's ``auth/``, sequence 4).
CORE_AUTH_PLUGINS: tuple[str, ...] = (
    "email",
    "ldap",
    "lti",
    "manual",
    "nologin",
    "none",
    "oauth2",
    "shibboleth",
    "webservice",
)
#: Plugins whose ``is_internal()`` is true: a new account needs a password or
#: ``createpassword`` (recorded for manual and nologin; email, none and lti read
#: from their code; ldap and oauth2 recorded as external).
INTERNAL_AUTH_PLUGINS = frozenset({"email", "lti", "manual", "nologin", "none"})
#: Plugins ``core_user_create_users`` refuses whatever is installed.
NO_NEW_USERS_AUTH = frozenset({"mnet", "webservice"})
#: The companion plugin (``moodle/local_enrolstream``) and its functions.
COMPANION_PLUGIN = "local_enrolstream"
SET_ENROLMENT_STATUS = "local_enrolstream_set_enrolment_status"
GET_COURSE_ENROLMENTS = "local_enrolstream_get_course_enrolments"
#: The service of a site that installed the plugin and added its status function.
COMPANION_SERVICE_FUNCTIONS: tuple[str, ...] = (
    *DEFAULT_SERVICE_FUNCTIONS,
    SET_ENROLMENT_STATUS,
)
#: ... and its bulk roster read too (plugin version 2026120200 and later).
COMPANION_READ_SERVICE_FUNCTIONS: tuple[str, ...] = (
    *COMPANION_SERVICE_FUNCTIONS,
    GET_COURSE_ENROLMENTS,
)
# The recorded wsclient role may assign these; an admin may assign every role
# whose context levels include "course" (coursecreator is category/system only).
WSCLIENT_ASSIGNABLE_ROLES = frozenset({3, 4, 5})
ADMIN_ASSIGNABLE_ROLES = frozenset({1, 3, 4, 5})


@dataclass(frozen=True)
class Token:
    """A web-service token: its user, its service's functions, the roles it may assign."""

    token: str
    userid: int
    functions: tuple[str, ...] = DEFAULT_SERVICE_FUNCTIONS
    assignable_roles: frozenset[int] = WSCLIENT_ASSIGNABLE_ROLES
    #: Whether the token's user may see e-mail addresses outside a course
    #: (``moodle/site:viewuseridentity`` with ``email`` in ``showuseridentity``):
    #: ``core_user_get_users_by_field`` finds nobody by e-mail otherwise (sequence 4).
    sees_emails: bool = True


@dataclass(frozen=True)
class SiteConfig:
    """Site-wide settings that show up in answers (defaults: the recorded site)."""

    sitename: str = "Moodle WS Harness"
    release: str = "5.1+ (Build: 20251017)"
    version: str = "2025100600.02"
    themerev: int = 1795398843
    category_name: str = "Category 1"
    #: Add-on plugins installed (frankenstyle names); their functions exist only then.
    plugins: tuple[str, ...] = ()
    #: The installed plugin's ``version.php`` as site_info lists it for each of its
    #: functions ("": each function's own, the version that brought it).
    plugin_version: str = ""
    #: Authentication plugins installed (a site with SSO adds ``saml2``, ``oidc``…).
    auth_plugins: tuple[str, ...] = CORE_AUTH_PLUGINS
