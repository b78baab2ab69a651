"""``core_course_get_categories``, ``core_course_create_categories``, course updates.

Recorded (sequence 5): a taken category idnumber is ``categoryidnumbertaken``;
the default category lists ``idnumber: null``; ``core_course_update_courses``
updates each course on its own and reports a missing one as a warning
(``invalidrecordunknown``), answering ``{"warnings": [...]}``. Only the fields
enrolstream sends are simulated (``visible``); others are validated and kept
as the site had them.
"""

from __future__ import annotations

from typing import Any

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.course_shapes import COURSE_SETTING_INTS
from sandbox.moodle_sim.external import Multiple, Required, Single, Value
from sandbox.moodle_sim.tables import Category

__all__ = ["FUNCTIONS"]

_OPT: Required = "optional"
_CRITERIA = frozenset({"id", "ids", "name", "parent", "idnumber", "visible", "theme"})


def _category(ctx: CallContext, category: Category) -> dict[str, Any]:
    courses = [c for c in ctx.state.courses() if c.categoryid == category.id]
    return {
        "id": category.id,
        "name": category.name,
        "idnumber": category.idnumber,
        "description": category.description,
        "descriptionformat": 1,
        "parent": category.parent,
        "sortorder": category.sortorder,
        "coursecount": len(courses),
        "visible": 1,
        "visibleold": 1,
        "timemodified": category.timemodified,
        "depth": 1,
        "path": f"/{category.id}",
        "theme": "",
    }


def _matches(category: Category, key: str, value: str) -> bool:
    if key == "ids":
        return str(category.id) in {v.strip() for v in value.split(",")}
    if key == "visible":
        return value.strip() == "1"
    if key == "theme":
        return value == ""
    return str(getattr(category, key if key != "id" else "id")) == value


def get_categories(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Categories matching every criterion (none: all), in sort order."""
    criteria = [(c["key"], c["value"]) for c in params["criteria"]]
    for key, _ in criteria:
        if key not in _CRITERIA:
            raise errors.invalid_parameter(f"Invalid category criteria key: {key}")
    found = [
        c
        for c in ctx.state.categories()
        if all(_matches(c, key, value) for key, value in criteria)
    ]
    return [_category(ctx, c) for c in sorted(found, key=lambda c: c.sortorder)]


def create_categories(ctx: CallContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Create every category or none; an idnumber must be unique on the site."""
    state = ctx.state
    created = []
    with state.transaction():
        for row in params["categories"]:
            parent = row["parent"]
            if parent and state.category(parent) is None:
                raise errors.missing_record("course_categories", parent)
            idnumber = row.get("idnumber")
            if idnumber and any(c.idnumber == idnumber for c in state.categories()):
                raise errors.moodle_exception(
                    "categoryidnumbertaken",
                    "ID number is already used for another category",
                )
            categoryid = state.add_category(row["name"], idnumber=idnumber)
            created.append({"id": categoryid, "name": row["name"]})
    return created


def update_courses(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Each course in its own transaction; a missing one is a warning."""
    state = ctx.state
    warnings = []
    for row in params["courses"]:
        if state.course(row["id"]) is None:
            warnings.append(
                {
                    "item": "course",
                    "itemid": row["id"],
                    "warningcode": "invalidrecordunknown",
                    "message": "Can't find data record in database.",
                }
            )
            continue
        if "visible" in row:
            state.set_course_visible(row["id"], visible=bool(row["visible"]))
    return {"warnings": warnings}


def _v(kind: str, required: Required = _OPT) -> Value:
    return Value(kind, required)


_WARNINGS = Multiple(
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
_CATEGORY = Single(
    {
        "id": _v("int", "required"),
        "name": _v("text", "required"),
        "idnumber": _v("raw"),
        "description": _v("raw", "required"),
        "descriptionformat": _v("int", "required"),
        "parent": _v("int", "required"),
        "sortorder": _v("int", "required"),
        "coursecount": _v("int", "required"),
        "visible": _v("int"),
        "visibleold": _v("int"),
        "timemodified": _v("int"),
        "depth": _v("int", "required"),
        "path": _v("text", "required"),
        "theme": _v("theme"),
    }
)
_UPDATE_COURSE = Single(
    {
        "id": _v("int", "required"),
        **{
            k: _v("text")
            for k in ("fullname", "shortname", "idnumber", "summary", "lang")
        },
        **{k: _v("int") for k in ("categoryid", "summaryformat", *COURSE_SETTING_INTS)},
        "format": _v("plugin"),
        "forcetheme": _v("plugin"),
    }
)

FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "core_course_get_categories",
            Single(
                {
                    "criteria": Multiple(
                        Single(
                            {
                                "key": _v("alpha", "required"),
                                "value": _v("raw", "required"),
                            }
                        ),
                        "default",
                        [],
                    ),
                    "addsubcategories": Value("bool", "default", True),
                }
            ),
            Multiple(_CATEGORY),
            get_categories,
        ),
        WsFunction(
            "core_course_create_categories",
            Single(
                {
                    "categories": Multiple(
                        Single(
                            {
                                "name": _v("text", "required"),
                                "parent": Value("int", "default", 0),
                                "idnumber": _v("raw"),
                                "description": _v("raw"),
                                "descriptionformat": Value("int", "default", 1),
                                "theme": _v("theme"),
                            }
                        )
                    )
                }
            ),
            Multiple(
                Single({"id": _v("int", "required"), "name": _v("raw", "required")})
            ),
            create_categories,
            rows_param="categories",
        ),
        WsFunction(
            "core_course_update_courses",
            Single({"courses": Multiple(_UPDATE_COURSE)}),
            Single({"warnings": _WARNINGS}),
            update_courses,
            rows_param="courses",
        ),
    )
}
