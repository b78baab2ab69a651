"""A course on the wire: the summary ``get_courses_by_field`` returns, and the
descriptions of that summary and of a course to create.

``enrollmentmethods`` lists the *enabled* instance types, so a missing or
disabled manual instance shows as ``[]`` there: the usable pre-flight check.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim.api import CallContext
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
        "categoryname": _category_name(ctx, course.categoryid),
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
        "visible": course.visible,
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


def _category_name(ctx: CallContext, categoryid: int) -> str:
    category = ctx.state.category(categoryid)
    return ctx.state.site.category_name if category is None else category.name


#: The optional integer settings of a course that core_course_create_courses and
#: core_course_update_courses both take, in Moodle's order.
COURSE_SETTING_INTS = (
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


def _v(kind: str, required: Required = "optional") -> Value:
    return Value(kind, required)


COURSE_KEYS: dict[str, Description] = {
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
NEW_COURSE = Single(
    {
        "fullname": _v("text", "required"),
        "shortname": _v("text", "required"),
        "categoryid": _v("int", "required"),
        "idnumber": _v("raw"),
        "summary": _v("raw"),
        "summaryformat": Value("int", "default", 1),
        "format": Value("plugin", "default", "topics"),
        **{k: _v("int") for k in COURSE_SETTING_INTS},
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
