"""``core_course_get_courses_by_field``, ``core_course_create_courses``, site info.

``enrollmentmethods`` lists the *enabled* instance types, so a missing or
disabled manual instance shows as ``[]`` there: the usable pre-flight check
(``core_enrol_get_course_enrolment_methods`` never lists manual instances).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.external import Description, Multiple, Required, Single, Value
from sandbox.moodle_sim.state import Course

_OPT: Required = "optional"
_FILTERS = (
    "displayh5p",
    "activitynames",
    "mathjaxloader",
    "emoticon",
    "urltolink",
    "mediaplugin",
)


def course_summary(ctx: CallContext, course: Course) -> dict[str, Any]:
    """One course as ``get_courses_by_field`` returns it."""
    state = ctx.state
    contacts = []
    for userid in state.contacts(course.id):
        user = state.user(userid)
        if user is not None:
            contacts.append(
                {"id": userid, "fullname": f"{user.firstname} {user.lastname}"}
            )
    return {
        "id": course.id,
        "fullname": course.fullname,
        "displayname": course.fullname,
        "shortname": course.shortname,
        "courseimage": f"{ctx.wwwroot}/pluginfile.php/{course.contextid}"
        "/course/generated/course.svg",
        "categoryid": course.categoryid,
        "categoryname": state.site.category_name,
        "sortorder": state.sortorder(course.id),
        "summary": "",
        "summaryformat": 1,
        "summaryfiles": [],
        "overviewfiles": [],
        "showactivitydates": True,
        "showcompletionconditions": True,
        "contacts": contacts,
        "enrollmentmethods": [i.enrol for i in course.instances if i.status == 0],
        "idnumber": course.idnumber,
        "format": "topics",
        "showgrades": 1,
        "newsitems": 5,
        "startdate": course.startdate,
        "enddate": course.enddate,
        "maxbytes": 0,
        "showreports": 0,
        "visible": 1,
        "groupmode": 0,
        "groupmodeforce": 0,
        "defaultgroupingid": 0,
        "enablecompletion": 1,
        "completionnotify": 0,
        "lang": "",
        "theme": "",
        "marker": 0,
        "legacyfiles": 0,
        "calendartype": "",
        "timecreated": course.timecreated,
        "timemodified": course.timecreated,
        "requested": 0,
        "cacherev": course.timecreated,
        "filters": [
            {"filter": f, "localstate": 0, "inheritedstate": 1} for f in _FILTERS
        ],
        "courseformatoptions": [
            {"name": "hiddensections", "value": 1},
            {"name": "coursedisplay", "value": 0},
            {"name": "indentation", "value": "1"},
        ],
    }


def _matches(course: Course, field: str, value: str) -> bool:
    if field == "":
        return course.id != 1
    if field in {"id", "category"}:
        number = course.id if field == "id" else course.categoryid
        return value.strip() == str(number)
    if field == "ids":
        return str(course.id) in {v.strip() for v in value.split(",")}
    return str(getattr(course, field)) == value


def get_courses_by_field(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Courses matching one field; nothing found is ``{courses: [], warnings: []}``."""
    field, value = params["field"], params["value"]
    if field not in {"", "id", "ids", "shortname", "idnumber", "category"}:
        raise errors.invalid_parameter("Invalid field name")
    found = [c for c in ctx.state.courses() if _matches(c, field, value)]
    return {"courses": [course_summary(ctx, c) for c in found], "warnings": []}


def create_courses(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Create all courses or none, each with manual (on), guest and self (off)."""
    state = ctx.state
    created = []
    with state.transaction():
        for row in params["courses"]:
            if row["categoryid"] != 1:
                raise errors.missing_record("course_categories", row["categoryid"])
            if any(c.shortname == row["shortname"] for c in state.courses()):
                raise errors.moodle_exception(
                    "shortnametaken",
                    f"Short name is already used for another course ({row['shortname']})",
                )
            idnumber = row.get("idnumber", "")
            if idnumber and any(c.idnumber == idnumber for c in state.courses()):
                raise errors.moodle_exception(
                    "courseidnumbertaken",
                    f"ID number is already used for another course ({idnumber})",
                )
            courseid = state.add_course(
                row["shortname"],
                row["fullname"],
                idnumber=idnumber,
                categoryid=row["categoryid"],
            )
            course = state.course(courseid)
            if course is not None and "startdate" in row:
                course.startdate = row["startdate"]
                course.enddate = row.get("enddate", course.enddate)
            created.append({"id": courseid, "shortname": row["shortname"]})
    return created


def site_info(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """The token owner, the site's release and the service's function list."""
    del params
    state = ctx.state
    user = state.user(ctx.token.userid)
    assert user is not None  # noqa: S101 - tokens are issued to existing users
    registry = all_functions()
    private_key = hashlib.sha256(f"{ctx.token.token}:{user.id}".encode()).hexdigest()[
        :32
    ]
    features = [
        ("usecomments", 1),
        ("usetags", 1),
        ("enablenotes", 1),
        ("messaging", 1),
        ("enableblogs", 1),
        ("enablecompletion", 1),
        ("enablebadges", 1),
        ("messagingallusers", 0),
        ("enablecustomreports", 1),
        ("enableglobalsearch", 0),
        ("mnet_dispatcher_mode", 0),
        ("enablecompetencies", 1),
    ]
    return {
        "sitename": state.site.sitename,
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": f"{user.firstname} {user.lastname}",
        "lang": user.lang,
        "userid": user.id,
        "siteurl": ctx.wwwroot,
        "userpictureurl": ctx.user_picture("f1"),
        "functions": [
            {"name": name, "version": registry[name].version}
            for name in ctx.token.functions
            if name in registry
        ],
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": state.site.release,
        "version": state.site.version,
        "mobilecssurl": "",
        "advancedfeatures": [{"name": n, "value": v} for n, v in features],
        "usercanmanageownfiles": True,
        "userquota": 104857600,
        "usermaxuploadfilesize": 67108864,
        "userhomepage": 1,
        "userprivateaccesskey": private_key,
        "siteid": 1,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": ctx.is_admin,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }


def _v(kind: str, required: Required = "optional") -> Value:
    return Value(kind, required)


_COURSE_KEYS: dict[str, Description] = {
    "id": _v("int", "required"),
    "fullname": _v("raw", "required"),
    "displayname": _v("raw", "required"),
    "shortname": _v("raw", "required"),
    "courseimage": _v("raw", "required"),
    "categoryid": _v("int"),
    "categoryname": _v("raw"),
    "sortorder": _v("int"),
    "summary": _v("raw", "required"),
    "summaryformat": _v("int", "required"),
    "summaryfiles": Multiple(Single({"filename": _v("raw")}), _OPT),
    "overviewfiles": Multiple(Single({"filename": _v("raw")}), _OPT),
    "showactivitydates": _v("bool", "required"),
    "showcompletionconditions": _v("bool", "required"),
    "contacts": Multiple(
        Single({"id": _v("int", "required"), "fullname": _v("raw", "required")})
    ),
    "enrollmentmethods": Multiple(_v("plugin", "required")),
    "idnumber": _v("raw"),
    "format": _v("plugin"),
    **{
        k: _v("int")
        for k in (
            "showgrades",
            "newsitems",
            "startdate",
            "enddate",
            "maxbytes",
            "showreports",
            "visible",
            "groupmode",
            "groupmodeforce",
            "defaultgroupingid",
            "enablecompletion",
            "completionnotify",
        )
    },
    "lang": _v("safedir"),
    "theme": _v("plugin"),
    "marker": _v("int"),
    "legacyfiles": _v("int"),
    "calendartype": _v("plugin"),
    "timecreated": _v("int"),
    "timemodified": _v("int"),
    "requested": _v("int"),
    "cacherev": _v("int"),
    "filters": Multiple(
        Single(
            {
                "filter": _v("plugin", "required"),
                "localstate": _v("int", "required"),
                "inheritedstate": _v("int", "required"),
            }
        ),
        _OPT,
    ),
    "courseformatoptions": Multiple(
        Single({"name": _v("alpha", "required"), "value": _v("raw", "required")}), _OPT
    ),
}
_NAME_VALUE = Single({"name": _v("raw", "required"), "value": _v("raw", "required")})
_SITE_INFO = Single(
    {
        **{
            k: _v("raw", "required")
            for k in (
                "sitename",
                "username",
                "firstname",
                "lastname",
                "fullname",
                "lang",
            )
        },
        "userid": _v("int", "required"),
        "siteurl": _v("raw", "required"),
        "userpictureurl": _v("raw", "required"),
        "functions": Multiple(
            Single({"name": _v("raw", "required"), "version": _v("text", "required")})
        ),
        "downloadfiles": _v("int"),
        "uploadfiles": _v("int"),
        "release": _v("text"),
        "version": _v("text"),
        "mobilecssurl": _v("raw"),
        "advancedfeatures": Multiple(_NAME_VALUE, _OPT),
        "usercanmanageownfiles": _v("bool"),
        "userquota": _v("int"),
        "usermaxuploadfilesize": _v("int"),
        "userhomepage": _v("int"),
        "userprivateaccesskey": _v("raw"),
        "siteid": _v("int"),
        "sitecalendartype": _v("plugin"),
        "usercalendartype": _v("plugin"),
        "userissiteadmin": _v("bool"),
        "theme": _v("plugin"),
        "limitconcurrentlogins": _v("int"),
        "policyagreed": _v("int"),
    }
)

_NEW_COURSE = Single(
    {
        "fullname": _v("text", "required"),
        "shortname": _v("text", "required"),
        "categoryid": _v("int", "required"),
        "idnumber": _v("raw"),
        "summary": _v("raw"),
        "summaryformat": Value("int", "default", 1),
        "format": Value("plugin", "default", "topics"),
        **{
            k: _v("int")
            for k in (
                "showgrades",
                "newsitems",
                "startdate",
                "enddate",
                "numsections",
                "maxbytes",
                "showreports",
                "visible",
                "hiddensections",
                "groupmode",
                "groupmodeforce",
                "defaultgroupingid",
                "enablecompletion",
                "completionnotify",
            )
        },
        "lang": _v("safedir"),
        "forcetheme": _v("plugin"),
        "courseformatoptions": Multiple(
            Single({"name": _v("alpha", "required"), "value": _v("raw", "required")}),
            _OPT,
        ),
        "customfields": Multiple(
            Single(
                {
                    "shortname": _v("alphanumext", "required"),
                    "value": _v("raw", "required"),
                }
            ),
            _OPT,
        ),
    }
)

FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_course_get_courses_by_field",
            Single(
                {
                    "field": Value("alpha", "default", ""),
                    "value": Value("raw", "default", ""),
                }
            ),
            Single(
                {
                    "courses": Multiple(Single(_COURSE_KEYS)),
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
                    ),
                }
            ),
            get_courses_by_field,
        ),
        WsFunction(
            "core_course_create_courses",
            Single({"courses": Multiple(_NEW_COURSE)}),
            Multiple(
                Single(
                    {"id": _v("int", "required"), "shortname": _v("raw", "required")}
                )
            ),
            create_courses,
            rows_param="courses",
        ),
        WsFunction(
            "core_webservice_get_site_info",
            Single(
                {
                    "serviceshortnames": Multiple(
                        _v("alphanumext", "required"), "default", []
                    )
                }
            ),
            _SITE_INFO,
            site_info,
        ),
    )
}


def all_functions() -> dict[str, WsFunction]:
    """Every simulated function by name."""
    from sandbox.moodle_sim import users, ws_enrol  # noqa: PLC0415 - avoid an import cycle

    return {**ws_enrol.FUNCTIONS, **users.FUNCTIONS, **FUNCTIONS}
