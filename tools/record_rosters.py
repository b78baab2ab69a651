"""Record the companion plugin's bulk roster read on a real Moodle, and its latency.

Two commands, both against the harness site ``MOODLE_URL`` names (see
``tools/record_moodle.py`` for the environment and how files are written):

    .venv/bin/python -m tools.record_rosters cases --out tests/data/moodle-golden
    .venv/bin/python -m tools.record_rosters latency --out tests/data/moodle-golden

``cases`` (sequence 6 of ``INDEX.md``) starts on a site whose plugin lacks
``local_enrolstream_get_course_enrolments`` (none, or version 2026120100):
it records that answer, installs the repository's plugin (copied over
``public/local/enrolstream``, ``admin/cli/upgrade.php``), takes the function
out of the service and back in, then reads courses holding active, suspended,
expired, not-yet-started and disabled-instance enrolments, several roles and
groups. Every read also records what ``core_enrol_get_enrolled_users`` lists
for the same courses (everyone with roles and groups, and ``onlysuspended=1``),
so the replay proves both say the same.

``latency`` makes 1,000 users (``p0009…``), a course holding all of them and 40
courses of 25, then times each call as ``latency.json`` was timed: client-side
wall time of one HTTP request, Python urllib, a new TCP connection each,
``REPEAT`` runs, median. It writes ``latency_rosters.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.record_moodle import (
    COMPANION_SOURCE,
    COURSE_CONTEXT,
    EDITINGTEACHER,
    MISSING,
    STUDENT,
    TEACHER,
    Recorder,
    Site,
    _rows,
    _users,
    site_from_environment,
)

BULK = "local_enrolstream_get_course_enrolments"
ROSTER_FIELDS = "id,idnumber,username,fullname,roles,groups"
DAY_S = 86400
REPEAT = 5
LATENCY_USERS = 1000
SMALL_COURSES, PER_SMALL = 40, 25


def _core_listings(site: Site, courses: list[int]) -> dict[str, Any]:
    """What ``core_enrol_get_enrolled_users`` lists for each course (the reference)."""
    out: dict[str, Any] = {}
    for course in courses:
        everyone = site.call(
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(course)),
                ("options[0][name]", "userfields"),
                ("options[0][value]", ROSTER_FIELDS),
            ],
        )
        suspended = site.call(
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(course)),
                ("options[0][name]", "userfields"),
                ("options[0][value]", "id"),
                ("options[1][name]", "onlysuspended"),
                ("options[1][value]", "1"),
            ],
        )
        out[str(course)] = {"everyone": everyone, "onlysuspended": suspended}
    return {"core_enrol_get_enrolled_users (same courses, after the call)": out}


def _bulk_fields(
    courses: list[int], limitfrom: int | None = None, limitnumber: int | None = None
) -> list[tuple[str, str]]:
    fields = [(f"courseids[{i}]", str(c)) for i, c in enumerate(courses)]
    if limitfrom is not None:
        fields.append(("limitfrom", str(limitfrom)))
    if limitnumber is not None:
        fields.append(("limitnumber", str(limitnumber)))
    return fields


def install_plugin(site: Site) -> None:
    """Install (or upgrade to) the repository's plugin as an administrator would."""
    target = site.moodle_dir / "public" / "local" / "enrolstream"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(COMPANION_SOURCE, target)
    upgrade = site.moodle_dir / "admin" / "cli" / "upgrade.php"
    site.php("-d", "max_input_vars=5000", str(upgrade), "--non-interactive")
    known = site.sql(
        f"SELECT count(*) FROM mdl_external_functions WHERE name = '{BULK}'"
    )
    if not known:
        sys.exit(f"admin/cli/upgrade.php did not install {BULK}")


def _prevent_in_course(site: Site, course: int, capability: str) -> None:
    """Override ``capability`` to Prevent for the token's role in one course context."""
    context = (
        f"(SELECT id FROM mdl_context WHERE contextlevel = {COURSE_CONTEXT}"
        f" AND instanceid = {course})"
    )
    site.sql(
        "WITH added AS (INSERT INTO mdl_role_capabilities (contextid, roleid,"
        f" capability, permission, timemodified, modifierid) VALUES ({context},"
        " (SELECT id FROM mdl_role WHERE shortname = 'enrolstreamws'),"
        f" '{capability}', -1, extract(epoch from now())::int, 2) RETURNING id)"
        " SELECT count(*) FROM added"
    )
    site.php(str(site.moodle_dir / "admin" / "cli" / "purge_caches.php"))


def record_cases(rec: Recorder) -> None:
    """Sequence 6: the bulk roster read, absent, refused and at work."""
    site = rec.site
    known = site.sql(
        f"SELECT count(*) FROM mdl_external_functions WHERE name = '{BULK}'"
    )
    if known:
        sys.exit(f"{BULK} is installed: the sequence starts on a site without it")
    made = rec.case(
        "bulkroster_setup_create_courses",
        "set-up: four courses (one whose manual instance is then disabled, one the"
        " token may not read, one empty)",
        "core_course_create_courses",
        _rows(
            "courses",
            [
                {
                    "fullname": f"Roster test {n} Winter 2026",
                    "shortname": f"ROSTER10{n}Winter2026",
                    "categoryid": 1,
                }
                for n in range(1, 5)
            ],
        ),
    )
    c1, c2, c3, c4 = (c["id"] for c in made)
    users = rec.case(
        "bulkroster_setup_create_users",
        "set-up: a teacher and nine students (the last without an idnumber)",
        "core_user_create_users",
        _users("p000", range(800001, 800010), idnumber=True)
        + [
            (f"users[9][{k}]", v)
            for k, v in {
                "username": "p000800010",
                "password": "Passw0rd!x",
                "firstname": "First800010",
                "lastname": "Last800010",
                "email": "p000800010@example.com",
            }.items()
        ],
    )
    ids = [u["id"] for u in users]
    teacher, s1, s2, s3, s4, s5, s6, s7, s8, s9 = ids
    now = int(time.time())
    enrol = [
        {"roleid": EDITINGTEACHER, "userid": teacher, "courseid": c1},
        {"roleid": STUDENT, "userid": s1, "courseid": c1},
        {"roleid": STUDENT, "userid": s2, "courseid": c1, "suspend": 1},
        {
            "roleid": STUDENT,
            "userid": s3,
            "courseid": c1,
            "timestart": now - 30 * DAY_S,
            "timeend": now - DAY_S,
        },
        {
            "roleid": STUDENT,
            "userid": s4,
            "courseid": c1,
            "timestart": now + 30 * DAY_S,
        },
        {"roleid": STUDENT, "userid": s5, "courseid": c1},
        {"roleid": TEACHER, "userid": s5, "courseid": c1},
        {"roleid": STUDENT, "userid": s6, "courseid": c1},
        {"roleid": STUDENT, "userid": s6, "courseid": c2},
        {"roleid": STUDENT, "userid": s7, "courseid": c1},
        {"roleid": STUDENT, "userid": s8, "courseid": c3},
        {"roleid": STUDENT, "userid": s9, "courseid": c1},
    ]
    rec.case(
        "bulkroster_setup_enrol",
        "set-up: enrolments of every kind (active, suspended, ended, not started,"
        " two roles), in one call",
        "enrol_manual_enrol_users",
        _rows("enrolments", enrol),
    )
    groups = rec.case(
        "bulkroster_setup_groups",
        "set-up: two groups in the first course",
        "core_group_create_groups",
        _rows(
            "groups",
            [
                {"courseid": c1, "name": f"Section {s}", "description": ""}
                for s in ("A", "B")
            ],
        ),
    )
    ga, gb = (g["id"] for g in groups)
    rec.case(
        "bulkroster_setup_group_members",
        "set-up: group members (one student in both, the suspended one in B)",
        "core_group_add_group_members",
        _rows(
            "members",
            [
                {"groupid": ga, "userid": s1},
                {"groupid": gb, "userid": s2},
                {"groupid": ga, "userid": s5},
                {"groupid": gb, "userid": s5},
            ],
        ),
    )
    rec.case(
        "bulkroster_setup_suspend_account",
        "set-up: the account of s7 suspended (its enrolment stays active)",
        "core_user_update_users",
        _rows("users", [{"id": s7, "suspended": 1}]),
    )
    site.admin("manual-instance", "ROSTER102Winter2026", "disable")
    _prevent_in_course(site, c3, "moodle/course:enrolreview")

    def bulk(
        name: str,
        summary: str,
        courses: list[int],
        reference: list[int],
        **page: int,
    ) -> Any:
        return rec.case(
            name,
            summary,
            BULK,
            _bulk_fields(courses, page.get("limitfrom"), page.get("limitnumber")),
            extra=(lambda: _core_listings(site, reference)) if reference else None,
        )

    bulk("bulkroster_not_installed", "the function on a site without it", [c1], [])
    rec.case(
        "bulkroster_site_info_without",
        "the service's function list before the plugin has the function",
        "core_webservice_get_site_info",
        [],
    )
    install_plugin(site)
    os.environ["COMPANION_FUNCTIONS"] = BULK
    site.companion_service("remove")
    bulk(
        "bulkroster_not_in_service",
        "the plugin installed, the function not in the token's service",
        [c1],
        [],
    )
    site.companion_service("add")
    del os.environ["COMPANION_FUNCTIONS"]
    site.companion_service("add")
    rec.case(
        "bulkroster_site_info_with",
        "the function in the service: listed with the plugin's version",
        "core_webservice_get_site_info",
        [],
    )
    bulk(
        "bulkroster_success",
        "two courses: active, suspended, ended, not started, two roles, groups,"
        " a suspended account, a disabled instance",
        [c1, c2],
        [c1, c2],
    )
    bulk(
        "bulkroster_page_1",
        "the same, first page of 4 rows",
        [c1, c2],
        [],
        limitfrom=0,
        limitnumber=4,
    )
    bulk(
        "bulkroster_page_2",
        "second page of 4 rows",
        [c1, c2],
        [],
        limitfrom=4,
        limitnumber=4,
    )
    bulk(
        "bulkroster_page_3",
        "third page (the last, not full)",
        [c1, c2],
        [],
        limitfrom=8,
        limitnumber=4,
    )
    bulk(
        "bulkroster_unknown_course",
        "a course id that does not exist beside one that does",
        [MISSING, c2],
        [c2],
    )
    bulk(
        "bulkroster_forbidden_course",
        "a course where the token's role is prevented moodle/course:enrolreview,"
        " beside a readable one",
        [c3, c2],
        [c2],
    )
    bulk(
        "bulkroster_forbidden_course_alone",
        "the prevented course alone: no rows, its warning",
        [c3],
        [],
    )
    bulk("bulkroster_front_page", "the front page (course 1)", [1], [])
    bulk("bulkroster_empty_course", "a course nobody is enrolled in", [c4], [c4])
    bulk(
        "bulkroster_bad_limit",
        "limitnumber above the largest page",
        [c1],
        [],
        limitnumber=10001,
    )
    bulk("bulkroster_no_courses", "an empty course list", [], [])
    rec.case(
        "bulkroster_core_onlysuspended_forbidden",
        "core_enrol_get_enrolled_users onlysuspended=1 in the prevented course",
        "core_enrol_get_enrolled_users",
        [
            ("courseid", str(c3)),
            ("options[0][name]", "onlysuspended"),
            ("options[0][value]", "1"),
        ],
    )


def _timed(site: Site, function: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    runs: list[float] = []
    size = 0
    for _ in range(REPEAT):
        answer = site.post(site.head(function) + fields)
        if answer.text is None or '"exception"' in answer.text[:200]:
            sys.exit(f"{function}: {answer.transport_error or answer.text}")
        runs.append(answer.elapsed_s)
        size = len(answer.text.encode())
    return {
        "min_s": round(min(runs), 4),
        "median_s": round(statistics.median(runs), 4),
        "max_s": round(max(runs), 4),
        "runs_s": [round(r, 4) for r in runs],
        "response_bytes": size,
    }


def _chunks(
    rows: list[dict[str, int | str]], size: int
) -> list[list[dict[str, int | str]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def record_latency(site: Site, out: Path) -> None:
    """Time the bulk read, the two core listings and the identity look-ups."""
    made: list[int] = []
    numbers = range(900001, 900001 + LATENCY_USERS)
    for start in range(0, LATENCY_USERS, 100):
        batch = numbers[start : start + 100]
        made += [
            u["id"]
            for u in site.call(
                "core_user_create_users", _users("p000", batch, idnumber=True)
            )
        ]
    courses = site.call(
        "core_course_create_courses",
        _rows(
            "courses",
            [
                {
                    "fullname": f"Latency {n}",
                    "shortname": f"LAT{n:03d}Winter2026",
                    "categoryid": 1,
                }
                for n in range(SMALL_COURSES + 1)
            ],
        ),
    )
    big, small = courses[0]["id"], [c["id"] for c in courses[1:]]
    rows: list[dict[str, int | str]] = [
        {"roleid": STUDENT, "userid": u, "courseid": big} for u in made
    ] + [
        {"roleid": STUDENT, "userid": made[i * PER_SMALL + j], "courseid": c}
        for i, c in enumerate(small)
        for j in range(PER_SMALL)
    ]
    for part in _chunks(rows, 300):
        site.call("enrol_manual_enrol_users", _rows("enrolments", part))
    print(
        f"latency site: users {made[0]}..{made[-1]}, courses {big}, {small[0]}..{small[-1]}"
    )
    cases: dict[str, tuple[str, list[tuple[str, str]]]] = {
        "site_info_baseline": ("core_webservice_get_site_info", []),
        "bulk_1_course_x25": (BULK, _bulk_fields(small[:1])),
        "bulk_40_courses_x25": (BULK, _bulk_fields(small)),
        "bulk_1_course_x1000": (BULK, _bulk_fields([big])),
        "enrolled_users_roster_fields_x25": (
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(small[0])),
                ("options[0][name]", "userfields"),
                ("options[0][value]", ROSTER_FIELDS),
            ],
        ),
        "enrolled_users_roster_fields_x1000": (
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(big)),
                ("options[0][name]", "userfields"),
                ("options[0][value]", ROSTER_FIELDS),
            ],
        ),
        "enrolled_users_onlysuspended_x25": (
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(small[0])),
                ("options[0][name]", "userfields"),
                ("options[0][value]", "id"),
                ("options[1][name]", "onlysuspended"),
                ("options[1][value]", "1"),
            ],
        ),
    }
    idnumbers = [f"P000{n:06d}" for n in numbers]
    for count in (10, 100, 500, 990):
        cases[f"users_by_idnumber_{count}"] = (
            "core_user_get_users_by_field",
            [("field", "idnumber")]
            + [(f"values[{i}]", v) for i, v in enumerate(idnumbers[:count])],
        )
    results: dict[str, Any] = {}
    for name, (function, fields) in cases.items():
        results[name] = {"function": function, **_timed(site, function, fields)}
        print(f"{name}: median {results[name]['median_s']} s")
    moodle = f"{site.version['release']} ({site.version['version']})"
    document = {
        "conditions": {
            "moodle": f"{moodle}, PostgreSQL 15 on the same host (the harness's"
            " cluster: fsync off), PHP 8.2 built-in server (php -S, 4 workers),"
            " opcache on, max_input_vars=1000",
            "machine": "2 CPU cores shared with other work (load noted below),"
            " loopback HTTP, Python urllib client, new TCP connection per request",
            "method": f"client-side wall time per HTTP request, {REPEAT} runs each,"
            f" one request at a time; {LATENCY_USERS} users with idnumbers, one"
            f" course holding all of them and {SMALL_COURSES} courses of"
            f" {PER_SMALL} (students, no groups)",
            "load_before": os.getloadavg(),
            "token_user": "wsclient (non-admin role at system level)",
            "units": "seconds",
            "note": "core_user_get_users_by_field at 990 values, not 1,000: with"
            " max_input_vars=1000 a request of 1,000 values plus its 4 routing"
            " fields is cut by PHP",
        },
        "results": results,
    }
    (out / "latency_rosters.json").write_text(json.dumps(document, indent=2) + "\n")


def main() -> None:
    """Run ``cases`` or ``latency`` against the site MOODLE_URL names."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("cases", "latency"))
    parser.add_argument("--out", type=Path, default=Path("tests/data/moodle-golden"))
    args = parser.parse_args()
    site = site_from_environment()
    steps: dict[str, Callable[[], None]] = {
        "cases": lambda: _run_cases(site, args.out),
        "latency": lambda: record_latency(site, args.out),
    }
    steps[args.what]()


def _run_cases(site: Site, out: Path) -> None:
    recorder = Recorder(site, out)
    record_cases(recorder)
    for name, summary in recorder.written:
        print(f"| {name} | {summary} |")


if __name__ == "__main__":
    main()
