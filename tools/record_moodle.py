"""Record a real Moodle's answers as golden cases for the simulator's replay.

Runs one recorded sequence against a live Moodle 5.1 site and writes one JSON
file per case in the format described at the top of
``tests/data/moodle-golden/INDEX.md``: the exact form fields (token masked as
``<TOKEN>``), HTTP status, content type, body, and for state-changing cases the
ground truth read from the site's database with ``psql`` (``state_after``) for
the course and users the case names (``state_scope``). Cases run in order and
later ones build on the state earlier ones left, so the simulator replays the
files in the same order from the same set-up calls.

    set -a; . /tmp/moodle-harness/env; set +a   # MOODLE_URL, MOODLE_TOKEN (never written)
    export PGPASSWORD=...                   # the site database's password
    export MOODLE_HARNESS_DIR=...           # holds stop.sh / start.sh (outage cases)
    .venv/bin/python tools/record_moodle.py roles --out tests/data/moodle-golden
    .venv/bin/python tools/record_moodle.py companion --out tests/data/moodle-golden
    .venv/bin/python tools/record_moodle.py people --out tests/data/moodle-golden
    .venv/bin/python tools/record_moodle.py courses --out tests/data/moodle-golden

Optional: ``PGHOST`` ``PGPORT`` ``PGDATABASE`` ``PGUSER`` (default: the
harness's 127.0.0.1:55432, moodle/moodle) and ``MOODLE_DIR`` (``/opt/moodle``,
for ``admin/cli/cfg.php`` to switch site debugging on and off).

The ``roles`` sequence needs a fresh site (guest, admin and wsclient users, the
front page, no other courses): the replay builds its simulated site from the
same set-up calls, so ids must come out as recorded. The ``companion`` sequence
runs on whatever site there is (its replay starts its ids where the recorded
set-up answers say), but on one *without* the companion plugin
(``moodle/local_enrolstream``): it records the site without it, installs it
(copies it under ``public/local/`` and runs ``admin/cli/upgrade.php``) and puts
its function in the token's service with ``tools/moodle_companion.php``. The
``people`` sequence (accounts and instructors' roles) also runs on whatever site
there is; its usernames (``p0006…``) and course must not exist yet. So does the
``courses`` sequence (course shells, categories and groups): its usernames
(``p0007…``), its shells (``SHELL1…Winter2025``) and its category idnumber must
not exist yet.

The outage cases stop and start the site's web server (``MOODLE_HARNESS_STATE``,
default ``/tmp/moodle-harness``, holds its pid file). The token never reaches a
file: requests and answers are masked, and a file that would still contain it
is refused.

Reading the environment here (and not through settings) is deliberate: this is
a developer's tool run by hand against a lab site, not part of the service.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENDPOINT = "/webservice/rest/server.php"
WSCLIENT = "wsclient (dedicated integration user, custom role at system level)"
COURSE_CONTEXT = 50
DEBUG_DEVELOPER = 32767
HTTP_TIMEOUT_S = 120.0
STUDENT, TEACHER, EDITINGTEACHER, MANAGER = 5, 4, 3, 1
MISSING = 999999  # an id no user, course or context has
BULK_USERS = 330  # 330 rows x 3 fields + 3 = 993 form fields, under max_input_vars=1000
STOP_AFTER_S = 0.8  # the bulk enrol takes ~2.5 s on the harness
REPOSITORY = Path(__file__).resolve().parent.parent
COMPANION_FUNCTION = "local_enrolstream_set_enrolment_status"
COMPANION_SOURCE = REPOSITORY / "moodle" / "local_enrolstream"
COMPANION_TOOL = REPOSITORY / "tools" / "moodle_companion.php"
# A per-user secret in core_webservice_get_site_info's answer (masked as in sequence 1).
MASKED_ANSWER_KEYS = {"userprivateaccesskey": "<PRIVATEKEY>"}


@dataclass(frozen=True)
class Answer:
    """What the client got: HTTP status, content type and body (or a transport error)."""

    status: int | None
    content_type: str | None
    text: str | None
    elapsed_s: float
    transport_error: str | None = None


@dataclass(frozen=True)
class Scope:
    """Whose state a case records: one course, some users (or just a head count)."""

    course: int
    users: tuple[int, ...] = ()
    count_only: bool = False


@dataclass
class Site:
    """The live site: its web-service endpoint, token and database (through psql)."""

    url: str
    token: str
    moodle_dir: Path
    harness_dir: Path | None
    version: dict[str, str] = field(default_factory=dict)

    def post(self, pairs: list[tuple[str, str]]) -> Answer:
        """POST form fields to the REST endpoint; transport failures are answers too."""
        data = urllib.parse.urlencode(pairs).encode()
        request = urllib.request.Request(self.url + ENDPOINT, data=data, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                text = response.read().decode()
                status, ctype = response.status, response.headers["Content-Type"]
        except urllib.error.HTTPError as exc:  # a 4xx/5xx answer still has a body
            text = exc.read().decode()
            status, ctype = exc.code, exc.headers["Content-Type"]
        except urllib.error.URLError as exc:  # no connection: refused, unreachable
            error = f"{type(exc.reason).__name__}: {exc.reason}"
            return Answer(None, None, None, time.monotonic() - started, error)
        except (OSError, http.client.HTTPException) as exc:  # cut off mid-answer
            error = f"{type(exc).__name__}: {exc}"
            return Answer(None, None, None, time.monotonic() - started, error)
        return Answer(status, ctype, text, time.monotonic() - started)

    def call(self, function: str, fields: list[tuple[str, str]]) -> Any:
        """Call a function for its JSON value (set-up reads, facts)."""
        answer = self.post(self.head(function) + fields)
        if answer.text is None:
            sys.exit(f"{function}: {answer.transport_error}")
        return json.loads(answer.text)

    def head(self, function: str) -> list[tuple[str, str]]:
        """The routing fields every request starts with."""
        return [
            ("wstoken", self.token),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
        ]

    def sql(self, query: str) -> Any:
        """One JSON value selected by ``query`` (psql, connection from PG* variables)."""
        env = {
            "PGHOST": "127.0.0.1",
            "PGPORT": "55432",
            "PGDATABASE": "moodle",
            "PGUSER": "moodle",
            **os.environ,
        }
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out)

    def set_debug(self, level: int) -> None:
        """Switch the site's debugging level (0 off, 32767 developer) as an admin would."""
        self.set_config("debug", str(level))

    def set_config(self, name: str, value: str, component: str | None = None) -> None:
        """Set one site setting with ``admin/cli/cfg.php``."""
        cfg = self.moodle_dir / "admin" / "cli" / "cfg.php"
        where = [f"--component={component}"] if component else []
        self.php(str(cfg), *where, f"--name={name}", f"--set={value}")

    def php(self, *args: str) -> str:
        """Run a PHP command-line script on the site (``MOODLE_DIR``); its stdout."""
        env = {**os.environ, "MOODLE_DIR": str(self.moodle_dir)}
        done = subprocess.run(
            ["php", *args], env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    def companion_installed(self) -> bool:
        """Whether the site knows the companion plugin's function."""
        return bool(
            self.sql(
                "SELECT count(*) FROM mdl_external_functions"
                f" WHERE name = '{COMPANION_FUNCTION}'"
            )
        )

    def install_companion(self) -> None:
        """Install the repository's companion plugin as an administrator would."""
        target = self.moodle_dir / "public" / "local" / "enrolstream"
        shutil.copytree(COMPANION_SOURCE, target)
        # The CLI's own environment check wants max_input_vars >= 5000 (setup.sh too).
        upgrade = self.moodle_dir / "admin" / "cli" / "upgrade.php"
        self.php("-d", "max_input_vars=5000", str(upgrade), "--non-interactive")
        if not self.companion_installed():
            sys.exit("admin/cli/upgrade.php did not install local_enrolstream")

    def role_capability(self, capability: str, *, allow: bool) -> None:
        """Give the token's role ``capability`` at system level, or take it back.

        Written to the database and followed by a cache purge, as the admin page
        would; only used around one case and always taken back.
        """
        role = "(SELECT id FROM mdl_role WHERE shortname = 'enrolstreamws')"
        if allow:
            self.sql(
                "WITH added AS (INSERT INTO mdl_role_capabilities (contextid, roleid,"
                f" capability, permission, timemodified, modifierid) VALUES (1, {role},"
                f" '{capability}', 1, extract(epoch from now())::int, 2) RETURNING id)"
                " SELECT count(*) FROM added"
            )
        else:
            self.sql(
                "WITH gone AS (DELETE FROM mdl_role_capabilities WHERE contextid = 1"
                f" AND roleid = {role} AND capability = '{capability}' RETURNING id)"
                " SELECT count(*) FROM gone"
            )
        self.php(str(self.moodle_dir / "admin" / "cli" / "purge_caches.php"))

    def companion_service(self, verb: str) -> None:
        """``add`` or ``remove`` the plugin's function in the token's service."""
        self.php(str(COMPANION_TOOL), verb)

    def admin(self, *args: str) -> None:
        """Run the harness's ``moodle_admin.php`` (e.g. to disable a manual instance)."""
        if self.harness_dir is None:
            sys.exit("MOODLE_HARNESS_DIR must name the folder holding moodle_admin.php")
        self.php(str(self.harness_dir / "moodle_admin.php"), *args)

    def server_group(self) -> int:
        """The web server's process group, from the harness's pid file (start.sh's setsid)."""
        state = Path(os.environ.get("MOODLE_HARNESS_STATE", "/tmp/moodle-harness"))  # noqa: S108
        return int((state / "php-server.pid").read_text())

    def end_group(self, group: int) -> None:
        """SIGTERM what is left of the server's process group; wait until nothing listens."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        for _ in range(40):
            probe = self.post(self.head("core_webservice_get_site_info"))
            if probe.status is None:
                return
            time.sleep(0.25)
        sys.exit(f"the web server's process group {group} still answers")

    def harness(self, script: str) -> None:
        """Run the harness's ``stop.sh`` or ``start.sh``."""
        if self.harness_dir is None:
            sys.exit("MOODLE_HARNESS_DIR must name the folder holding stop.sh/start.sh")
        subprocess.run([str(self.harness_dir / script)], check=True)


def _ids(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values) or "0"


class Facts:
    """The ground truth recorded after a case, as the harness's SQL and roster show it."""

    def __init__(self, site: Site, watched: set[int]) -> None:
        self.site = site
        self.watched = watched  # users whose notifications are recorded

    def last_notification(self) -> int:
        """The newest notification id (the baseline of 'sent during the call')."""
        return int(self.site.sql("SELECT coalesce(max(id), 0) FROM mdl_notifications"))

    def notifications_since(self, after: int) -> list[dict[str, Any]]:
        """Notifications to watched users with an id above ``after``, oldest first."""
        rows = self.site.sql(
            "SELECT coalesce(json_agg(json_build_object('to_userid', useridto,"
            " 'subject', subject, 'from_userid', useridfrom, 'name', eventtype)"
            f" ORDER BY id), '[]') FROM mdl_notifications WHERE id > {after}"
            f" AND useridto IN ({_ids(tuple(sorted(self.watched)))})"
        )
        return list(rows)

    def collect(self, scope: Scope, since: int) -> dict[str, Any]:
        """``state_after`` for ``scope``; ``since`` is the pre-call notification id."""
        course = scope.course
        if scope.count_only:
            count = self.site.sql(
                "SELECT count(*) FROM mdl_user_enrolments ue JOIN mdl_enrol e"
                f" ON e.id = ue.enrolid WHERE e.courseid = {course}"
            )
            return {
                "enrolled_in_course_after (SQL count)": count,
                "notifications sent during the call (SQL)": self.notifications_since(
                    since
                ),
            }
        users = _ids(scope.users)
        context = (
            f"(SELECT id FROM mdl_context WHERE contextlevel = {COURSE_CONTEXT}"
            f" AND instanceid = {course})"
        )
        enrolments = self.site.sql(
            "SELECT coalesce(json_agg(json_build_object('userid', ue.userid,"
            " 'enrol', e.enrol, 'status', ue.status, 'timestart', ue.timestart,"
            " 'timeend', ue.timeend, 'roles', (SELECT coalesce(json_agg(r.shortname"
            " ORDER BY r.sortorder), '[]') FROM mdl_role_assignments ra JOIN mdl_role r"
            f" ON r.id = ra.roleid WHERE ra.userid = ue.userid AND ra.contextid = {context}))"
            " ORDER BY ue.userid), '[]') FROM mdl_user_enrolments ue JOIN mdl_enrol e"
            f" ON e.id = ue.enrolid WHERE e.courseid = {course} AND ue.userid IN ({users})"
        )
        assignments = self.site.sql(
            "SELECT coalesce(json_agg(json_build_object('userid', ra.userid, 'role',"
            " r.shortname, 'component', ra.component) ORDER BY ra.userid, r.sortorder),"
            " '[]') FROM mdl_role_assignments ra JOIN mdl_role r ON r.id = ra.roleid"
            f" WHERE ra.contextid = {context} AND ra.userid IN ({users})"
        )
        listed = self._roster(course, onlyactive=False)
        active = self._roster(course, onlyactive=True)
        return {
            "db_user_enrolments (harness SQL ground truth)": [
                {
                    "userid": row["userid"],
                    "enrol": row["enrol"],
                    "status": row["status"],
                    "status_meaning": "suspended" if row["status"] else "active",
                    "timestart": row["timestart"],
                    "timeend": row["timeend"],
                    "roles": row["roles"],
                }
                for row in enrolments
            ],
            "db_role_assignments in the course context (SQL)": assignments,
            "get_enrolled_users ids (default options)": sorted(listed),
            "get_enrolled_users ids (onlyactive=1)": sorted(active),
            "get_enrolled_users roles of these users (default options)": {
                str(uid): listed[uid] for uid in scope.users if uid in listed
            },
            "notifications sent during the call (SQL)": self.notifications_since(since),
        }

    def user_rows(self, usernames: tuple[str, ...]) -> list[dict[str, Any]]:
        """The ``{user}`` rows of ``usernames`` as the database holds them (no hashes)."""
        names = ",".join(f"'{name}'" for name in usernames) or "''"
        rows = self.site.sql(
            "SELECT coalesce(json_agg(json_build_object('username', u.username,"
            " 'auth', u.auth, 'firstname', u.firstname, 'lastname', u.lastname,"
            " 'middlename', u.middlename, 'email', u.email, 'idnumber', u.idnumber,"
            " 'suspended', u.suspended, 'confirmed', u.confirmed, 'password', CASE"
            " WHEN u.password = '' THEN 'empty' WHEN u.password = 'not cached'"
            " THEN 'not cached' ELSE 'a hash' END, 'auth_forcepasswordchange',"
            " (SELECT p.value FROM mdl_user_preferences p WHERE p.userid = u.id"
            " AND p.name = 'auth_forcepasswordchange')) ORDER BY u.id), '[]')"
            f" FROM mdl_user u WHERE u.deleted = 0 AND u.username IN ({names})"
        )
        return list(rows)

    def _roster(self, course: int, *, onlyactive: bool) -> dict[int, list[str]]:
        fields = [("courseid", str(course))]
        if onlyactive:
            fields += [("options[0][name]", "onlyactive"), ("options[0][value]", "1")]
        body = self.site.call("core_enrol_get_enrolled_users", fields)
        if not isinstance(body, list):
            sys.exit(f"get_enrolled_users of course {course}: {body}")
        return {u["id"]: [r["shortname"] for r in u["roles"]] for u in body}


def _elide(params: dict[str, str], prefix: str) -> tuple[dict[str, Any], int]:
    """Keep the head, the first 3 items and the last one of a long ``prefix[i][…]`` list."""
    keys = list(params)
    items = [k for k in keys if k.startswith(prefix)]
    width = len([k for k in items if k.startswith(f"{prefix}[0]")])
    first, last = keys.index(items[0]), keys.index(items[-1])
    kept = keys[: first + 3 * width] + keys[last + 1 - width :]
    omitted = len(keys) - len(kept)
    elided: dict[str, Any] = {}
    for k in kept:
        if k == keys[last + 1 - width]:
            elided["..."] = f"{omitted} more keys omitted"
        elided[k] = params[k]
    return elided, len(keys)


class Recorder:
    """Sends each case, masks the token, reads the facts and writes the JSON file."""

    def __init__(self, site: Site, out: Path) -> None:
        self.site, self.out = site, out
        self.facts = Facts(site, set())
        self.written: list[tuple[str, str]] = []

    def case(
        self,
        name: str,
        summary: str,
        function: str,
        fields: list[tuple[str, str]],
        *,
        scope: Scope | None = None,
        note: str | None = None,
        elide: str | None = None,
        send: Callable[[list[tuple[str, str]]], Answer] | None = None,
        users: tuple[str, ...] = (),
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> Any:
        """Record one case; ``send`` replaces a plain POST (e.g. to stop the site meanwhile).

        ``users``: usernames whose ``{user}`` rows are recorded after the call
        (``state_after["db_users (SQL)"]``), for the account cases. ``extra``:
        further ground truth read after the call (courses, groups), merged into
        ``state_after``.
        """
        since = self.facts.last_notification() if scope else 0
        pairs = self.site.head(function) + fields
        answer = (send or self.site.post)(pairs)
        params = {k: "<TOKEN>" if v == self.site.token else v for k, v in pairs}
        record: dict[str, Any] = {
            "case": name,
            "summary": summary,
            "function": function,
            "endpoint": ENDPOINT,
            "http_method": "POST",
            "token_user": WSCLIENT,
            "request_params": params,
            "request_raw": None,
        }
        if elide is not None:
            record["request_params"], record["request_param_count"] = _elide(
                params, elide
            )
        body = self._body(answer)
        record |= {
            "http_status": answer.status,
            "response_content_type": answer.content_type,
            "response_body_kind": body[0],
            "response_body": body[1],
            "moodle_version": self.site.version,
        }
        if answer.transport_error is not None:
            record["transport_error"] = answer.transport_error
        if scope is not None:
            record["state_scope"] = {
                "course": scope.course,
                "users": list(scope.users),
                **({"count_only": True} if scope.count_only else {}),
            }
            record["state_after"] = self.facts.collect(scope, since)
        if users:
            record["users_scope"] = list(users)
            record.setdefault("state_after", {})["db_users (SQL)"] = (
                self.facts.user_rows(users)
            )
        if extra is not None:
            record.setdefault("state_after", {}).update(extra())
        if note is not None:
            record["note"] = note
        record["elapsed_s"] = round(answer.elapsed_s, 3)
        self._write(name, record)
        self.written.append((name, summary))
        return body[1]

    @staticmethod
    def _body(answer: Answer) -> tuple[str, Any]:
        if answer.text is None:
            return "none", None
        if answer.content_type == "application/json":
            decoded = json.loads(answer.text)
            if isinstance(decoded, dict):
                decoded |= {k: v for k, v in MASKED_ANSWER_KEYS.items() if k in decoded}
            return "json", decoded
        return "text", answer.text

    def _write(self, name: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        if self.site.token in text:
            sys.exit(f"{name}: the token would be written; nothing saved")
        (self.out / f"{name}.json").write_text(text)
        body = record["response_body"]
        shown = body if body is None or isinstance(body, str) else json.dumps(body)
        print(f"{name}: {record['http_status']} {str(shown)[:150]}")


def _users(prefix: str, numbers: range, *, idnumber: bool) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for i, n in enumerate(numbers):
        user = {
            "username": f"{prefix}{n:06d}",
            "password": "Passw0rd!x",
            "firstname": f"First{n}",
            "lastname": f"Last{n}",
            "email": f"{prefix}{n:06d}@example.com",
        }
        if idnumber:
            user["idnumber"] = f"{prefix.upper()}{n:06d}"
        fields += [(f"users[{i}][{k}]", v) for k, v in user.items()]
    return fields


def _rows(base: str, rows: list[dict[str, int | str]]) -> list[tuple[str, str]]:
    """Form fields of a list of structures: ``base[i][key]=value``."""
    return [
        (f"{base}[{i}][{k}]", str(v))
        for i, row in enumerate(rows)
        for k, v in row.items()
    ]


def _at(course: int, roleid: int, userid: int) -> dict[str, int | str]:
    """A role (un)assignment in a course's context by level and instance."""
    return {
        "roleid": roleid,
        "userid": userid,
        "contextlevel": "course",
        "instanceid": course,
    }


def record_roles(rec: Recorder) -> None:  # noqa: PLR0915 - one straight script of cases
    """Sequence 2: dropping a student by role instead of by status, and an outage."""
    site = rec.site
    courses = rec.case(
        "roles_setup_create_courses",
        "set-up: a course whose students are dropped by role, and a bulk course",
        "core_course_create_courses",
        _rows(
            "courses",
            [
                {
                    "fullname": "Role drop test Winter 2022",
                    "shortname": "ROLEDROP101Winter2022",
                    "categoryid": 1,
                    "idnumber": "202201-ROLEDROP101",
                },
                {
                    "fullname": "Bulk outage test Winter 2022",
                    "shortname": "BULK201Winter2022",
                    "categoryid": 1,
                    "idnumber": "202201-BULK201",
                },
            ],
        ),
    )
    course, bulk = (c["id"] for c in courses)
    made = rec.case(
        "roles_setup_create_users",
        "set-up: a teacher and six students",
        "core_user_create_users",
        _users("p000", range(400001, 400008), idnumber=True),
    )
    teacher, s1, s2, s3, s4, s5, s6 = (u["id"] for u in made)
    rec.facts.watched |= {teacher, s1, s2, s3, s4, s5, s6}
    everyone = (s1, s2, s3, s4, s5, s6)
    rec.case(
        "roles_setup_enrol_teacher",
        "set-up: the editing teacher (the course contact that sends welcome messages)",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [{"roleid": EDITINGTEACHER, "userid": teacher, "courseid": course}],
        ),
        scope=Scope(course, (teacher,)),
    )
    rec.case(
        "roles_setup_enrol_students",
        "set-up: five students enrolled in one call",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [
                {"roleid": STUDENT, "userid": u, "courseid": course}
                for u in (s1, s2, s3, s4, s5)
            ],
        ),
        scope=Scope(course, everyone),
    )
    context = int(
        site.sql(
            f"SELECT id FROM mdl_context WHERE contextlevel = {COURSE_CONTEXT}"
            f" AND instanceid = {course}"
        )
    )

    def assign(name: str, summary: str, rows: list[dict[str, int | str]]) -> None:
        rec.case(
            name,
            summary,
            "core_role_assign_roles",
            _rows("assignments", rows),
            scope=Scope(course, everyone),
        )

    def unassign(name: str, summary: str, rows: list[dict[str, int | str]]) -> None:
        rec.case(
            name,
            summary,
            "core_role_unassign_roles",
            _rows("unassignments", rows),
            scope=Scope(course, everyone),
        )

    def roster(name: str, summary: str, *, onlyactive: bool) -> None:
        fields = [("courseid", str(course))]
        if onlyactive:
            fields += [("options[0][name]", "onlyactive"), ("options[0][value]", "1")]
        rec.case(name, summary, "core_enrol_get_enrolled_users", fields)

    unassign(
        "unassign_roles_success",
        "drop by role: the student role removed at course level",
        [_at(course, STUDENT, s1)],
    )
    roster(
        "get_enrolled_users_no_role_default",
        "a user enrolled with no role left, default options",
        onlyactive=False,
    )
    roster(
        "get_enrolled_users_no_role_onlyactive",
        "a user enrolled with no role left, onlyactive=1",
        onlyactive=True,
    )
    unassign(
        "unassign_roles_not_held",
        "unassign a role the user does not hold",
        [_at(course, STUDENT, s1)],
    )
    assign(
        "assign_roles_success",
        "re-add by role: the student role assigned again at course level",
        [_at(course, STUDENT, s1)],
    )
    assign(
        "assign_roles_again_same",
        "assign the same role again",
        [_at(course, STUDENT, s1)],
    )
    assign(
        "assign_roles_by_contextid",
        "assign by contextid instead of contextlevel + instanceid",
        [{"roleid": TEACHER, "userid": s2, "contextid": context}],
    )
    unassign(
        "unassign_roles_by_contextid",
        "unassign by contextid",
        [{"roleid": TEACHER, "userid": s2, "contextid": context}],
    )
    assign(
        "assign_roles_forbidden_manager",
        "a role the token user may not assign (manager)",
        [_at(course, MANAGER, s2)],
    )
    assign(
        "assign_roles_nonexistent_role",
        "a role id that does not exist",
        [_at(course, 9999, s2)],
    )
    assign(
        "assign_roles_nonexistent_user",
        "a user id that does not exist",
        [_at(course, STUDENT, MISSING)],
    )
    assign(
        "assign_roles_not_enrolled",
        "a user not enrolled in the course",
        [_at(course, STUDENT, s6)],
    )
    assign(
        "assign_roles_batch_one_bad",
        "batch [good, nonexistent user, good]",
        [
            _at(course, TEACHER, s3),
            _at(course, STUDENT, MISSING),
            _at(course, TEACHER, s4),
        ],
    )
    assign(
        "assign_roles_nonexistent_course",
        "contextlevel=course with a course id that does not exist",
        [_at(MISSING, STUDENT, s2)],
    )
    assign(
        "assign_roles_nonexistent_contextid",
        "a contextid that does not exist",
        [{"roleid": STUDENT, "userid": s2, "contextid": MISSING}],
    )
    assign(
        "assign_roles_no_context",
        "neither contextid nor contextlevel + instanceid",
        [{"roleid": STUDENT, "userid": s2}],
    )
    assign(
        "assign_roles_bad_contextlevel",
        "an unknown context level name",
        [
            {
                "roleid": STUDENT,
                "userid": s2,
                "contextlevel": "bogus",
                "instanceid": course,
            }
        ],
    )
    unassign(
        "unassign_roles_forbidden_manager",
        "unassign a role the token user may not assign (manager)",
        [_at(course, MANAGER, s2)],
    )
    unassign(
        "unassign_roles_nonexistent_user",
        "unassign from a user id that does not exist",
        [_at(course, STUDENT, MISSING)],
    )
    unassign(
        "unassign_roles_batch_one_bad",
        "batch [good, forbidden role]",
        [_at(course, STUDENT, s3), _at(course, MANAGER, s4)],
    )
    unassign(
        "unassign_roles_nonexistent_course",
        "contextlevel=course with a course id that does not exist",
        [_at(MISSING, STUDENT, s2)],
    )
    unassign(
        "unassign_roles_not_enrolled",
        "unassign the role held by the user who is not enrolled",
        [_at(course, STUDENT, s6)],
    )
    site.set_debug(DEBUG_DEVELOPER)
    try:
        assign(
            "assign_roles_forbidden_manager_debug_on",
            "forbidden role with site debugging on",
            [_at(course, MANAGER, s2)],
        )
        assign(
            "assign_roles_nonexistent_user_debug_on",
            "nonexistent user with site debugging on",
            [_at(course, STUDENT, MISSING)],
        )
        assign(
            "assign_roles_nonexistent_course_debug_on",
            "nonexistent course with site debugging on",
            [_at(MISSING, STUDENT, s2)],
        )
    finally:
        site.set_debug(0)
    for name, suspend, summary in (
        (
            "enrol_suspend_1_active_welcome",
            1,
            "drop by status: suspend=1 on an active enrolment",
        ),
        ("enrol_suspend_0_welcome", 0, "re-add by status: suspend=0 on that enrolment"),
    ):
        rec.case(
            name,
            summary,
            "enrol_manual_enrol_users",
            _rows(
                "enrolments",
                [
                    {
                        "roleid": STUDENT,
                        "userid": s4,
                        "courseid": course,
                        "suspend": suspend,
                    }
                ],
            ),
            scope=Scope(course, everyone),
        )
    record_outage(rec, bulk)


def record_outage(rec: Recorder, bulk: int) -> None:
    """The web server stopped while a bulk enrol is in flight, then started again."""
    site = rec.site
    users: list[int] = []
    for part, numbers in enumerate(
        (range(410001, 410166), range(410166, 410001 + BULK_USERS)), start=1
    ):
        made = rec.case(
            f"roles_setup_create_bulk_users_{part}",
            f"set-up: bulk users, part {part} of 2",
            "core_user_create_users",
            _users("p000", numbers, idnumber=False),
        )
        users += [u["id"] for u in made]
    if users != list(range(users[0], users[0] + BULK_USERS)):
        sys.exit("bulk user ids are not consecutive: another client created users")
    batch = _rows(
        "enrolments",
        [{"roleid": STUDENT, "userid": u, "courseid": bulk} for u in users],
    )

    def stop_meanwhile(pairs: list[tuple[str, str]]) -> Answer:
        answers: list[Answer] = []
        sender = threading.Thread(target=lambda: answers.append(site.post(pairs)))
        sender.start()
        time.sleep(STOP_AFTER_S)
        site.harness("stop.sh")
        sender.join()
        if answers[0].elapsed_s < STOP_AFTER_S:
            sys.exit(
                "the batch was answered before the server stopped: raise BULK_USERS"
            )
        return answers[0]

    scope = Scope(bulk, count_only=True)
    group = site.server_group()
    rec.case(
        "outage_stop_in_flight",
        f"a {BULK_USERS}-row enrol batch in flight when the web server is stopped",
        "enrol_manual_enrol_users",
        batch,
        scope=scope,
        elide="enrolments",
        send=stop_meanwhile,
        note=f"stop.sh (SIGTERM to the php -S process group) ran {STOP_AFTER_S} s after"
        " the request was sent; the server log says 'Potential coding error - active"
        " database transaction detected during request shutdown' (rolled back)",
    )
    rec.case(
        "outage_worker_survives_stop",
        "the same batch sent right after stop.sh returned",
        "enrol_manual_enrol_users",
        batch,
        scope=scope,
        elide="enrolments",
        note="Moodle's SIGTERM handler ends the *request* with exit(143), not the php -S"
        " worker process that ran it: that worker keeps accepting on the listening"
        " socket after the master and the idle workers are gone, so the stopped site"
        " still answers (and start.sh then fails with 'Address already in use' while"
        " reporting success)",
    )
    rec.case(
        "outage_setup_unenrol_bulk",
        "set-up: the bulk enrolments removed again, so the retry below starts from none",
        "enrol_manual_unenrol_users",
        _rows("enrolments", [{"userid": u, "courseid": bulk} for u in users]),
        scope=scope,
        elide="enrolments",
    )
    site.end_group(group)
    try:
        rec.case(
            "outage_request_while_stopped",
            "the same batch sent while nothing listens (the surviving worker ended too)",
            "enrol_manual_enrol_users",
            batch,
            scope=scope,
            elide="enrolments",
        )
    finally:
        site.harness("start.sh")
    rec.case(
        "outage_retry_after_restart",
        "the same batch sent again once the web server is started",
        "enrol_manual_enrol_users",
        batch,
        scope=scope,
        elide="enrolments",
    )


def _status(courseid: int, userid: int, suspend: int) -> dict[str, int | str]:
    """One row of the companion function."""
    return {"courseid": courseid, "userid": userid, "suspend": suspend}


def record_companion(rec: Recorder) -> None:  # noqa: PLR0915 - one straight script of cases
    """Sequence 3: the companion plugin's status function, absent, refused and at work."""
    site = rec.site
    if site.companion_installed():
        sys.exit(
            "local_enrolstream is installed: the sequence starts on a site without it"
            " (php admin/cli/uninstall_plugins.php --plugins=local_enrolstream --run,"
            " then remove public/local/enrolstream)"
        )
    courses = rec.case(
        "companion_setup_create_courses",
        "set-up: a course whose students are suspended through the plugin, and one"
        " whose manual instance will be disabled",
        "core_course_create_courses",
        _rows(
            "courses",
            [
                {
                    "fullname": "Companion test Winter 2023",
                    "shortname": "COMPANION101Winter2023",
                    "categoryid": 1,
                    "idnumber": "202301-COMPANION101",
                },
                {
                    "fullname": "Manual off Winter 2023",
                    "shortname": "MANUALOFF301Winter2023",
                    "categoryid": 1,
                    "idnumber": "202301-MANUALOFF301",
                },
            ],
        ),
    )
    course, off = (c["id"] for c in courses)
    # A course created while new courses get no manual instance (enrol_manual's
    # "Add instance to new courses" off): a course without one, as restores make.
    site.set_config("defaultenrol", "0", component="enrol_manual")
    try:
        nomanual = rec.case(
            "companion_setup_create_course_no_manual",
            "set-up: a course created with enrol_manual/defaultenrol=0 (no manual instance)",
            "core_course_create_courses",
            _rows(
                "courses",
                [
                    {
                        "fullname": "No manual Winter 2023",
                        "shortname": "NOMANUAL201Winter2023",
                        "categoryid": 1,
                    }
                ],
            ),
        )[0]["id"]
    finally:
        site.set_config("defaultenrol", "1", component="enrol_manual")
    made = rec.case(
        "companion_setup_create_users",
        "set-up: a teacher and seven students",
        "core_user_create_users",
        _users("p000", range(500001, 500009), idnumber=True),
    )
    teacher, s1, s2, s3, s4, s5, s6, s7 = ids = [u["id"] for u in made]
    if ids != list(range(teacher, teacher + len(ids))):
        sys.exit("user ids are not consecutive: another client created users")
    rec.facts.watched |= set(ids)
    students = (s1, s2, s3, s4, s5, s6)
    rec.case(
        "companion_setup_enrol_teacher",
        "set-up: the editing teacher (the course contact that sends welcome messages)",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [{"roleid": EDITINGTEACHER, "userid": teacher, "courseid": course}],
        ),
        scope=Scope(course, (teacher,)),
    )
    rec.case(
        "companion_setup_enrol_students",
        "set-up: five students in the course, one in the course soon without a manual"
        " instance, in one call",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [
                {"roleid": STUDENT, "userid": u, "courseid": course}
                for u in (s1, s2, s3, s4, s7)
            ]
            + [{"roleid": STUDENT, "userid": s5, "courseid": off}],
        ),
        scope=Scope(course, students),
    )
    site.admin("manual-instance", "MANUALOFF301Winter2023", "disable")
    site.admin("delete-user", "idnumber", "P000500008")  # s7: deleting unenrols

    def status(
        name: str,
        summary: str,
        rows: list[dict[str, int | str]],
        scope: Scope | None = None,
    ) -> None:
        rec.case(
            name,
            summary,
            COMPANION_FUNCTION,
            _rows("enrolments", rows),
            scope=scope or Scope(course, students),
        )

    def site_info(name: str, summary: str) -> None:
        rec.case(name, summary, "core_webservice_get_site_info", [])

    status(
        "companion_not_installed",
        "the function called on a site without the plugin",
        [_status(course, s1, 1)],
    )
    site.set_debug(DEBUG_DEVELOPER)
    try:
        status(
            "companion_not_installed_debug_on",
            "the same with site debugging on",
            [_status(course, s1, 1)],
        )
    finally:
        site.set_debug(0)
    site_info(
        "companion_site_info_without_plugin",
        "the service's function list on a site without the plugin",
    )
    site.install_companion()
    site.companion_service("remove")
    status(
        "companion_not_in_service",
        "the plugin installed, its function not in the token's service",
        [_status(course, s1, 1)],
    )
    site.companion_service("add")
    site_info(
        "companion_site_info_with_plugin",
        "the function added to the service (and enrol/manual:manage to the role)",
    )
    for name, suspend, summary in (
        ("companion_suspend_success", 1, "suspend an active enrolment"),
        ("companion_suspend_again", 1, "suspend it again"),
        ("companion_reactivate_success", 0, "reactivate the suspended enrolment"),
        ("companion_reactivate_again", 0, "reactivate it again"),
    ):
        status(name, summary, [_status(course, s1, suspend)])
    status(
        "companion_not_enrolled_suspend",
        "suspend for a user not enrolled in the course",
        [_status(course, s6, 1)],
    )
    status(
        "companion_not_enrolled_reactivate",
        "reactivate for a user not enrolled in the course",
        [_status(course, s6, 0)],
    )
    status(
        "companion_no_manual_instance",
        "a course without a manual instance",
        [_status(nomanual, s2, 1)],
        Scope(nomanual, (s2,)),
    )
    status(
        "companion_manual_disabled",
        "suspend in a course whose manual instance is disabled",
        [_status(off, s5, 1)],
        Scope(off, (s5,)),
    )
    status(
        "companion_nonexistent_user",
        "a user id that does not exist",
        [_status(course, MISSING, 1)],
    )
    status(
        "companion_deleted_user",
        "a user deleted after being enrolled (deleting unenrolled them)",
        [_status(course, s7, 1)],
        Scope(course, (s7,)),
    )
    status(
        "companion_nonexistent_course",
        "a course id that does not exist",
        [_status(MISSING, s2, 1)],
    )
    status(
        "companion_suspend_not_0_or_1",
        "suspend=2",
        [_status(course, s2, 2)],
    )
    status(
        "companion_missing_suspend",
        "a row without the suspend key",
        [{"courseid": course, "userid": s2}],
    )
    status(
        "companion_batch_one_bad",
        "batch [suspend, not enrolled, suspend]",
        [_status(course, s2, 1), _status(course, s6, 1), _status(course, s3, 1)],
    )
    status(
        "companion_batch_ok",
        "batch [suspend, suspend]",
        [_status(course, s2, 1), _status(course, s3, 1)],
    )
    site.set_debug(DEBUG_DEVELOPER)
    try:
        status(
            "companion_not_enrolled_debug_on",
            "not enrolled, with site debugging on",
            [_status(course, s6, 1)],
        )
        status(
            "companion_suspend_not_0_or_1_debug_on",
            "suspend=2, with site debugging on",
            [_status(course, s4, 2)],
        )
        status(
            "companion_nonexistent_course_debug_on",
            "a course that does not exist, with site debugging on",
            [_status(MISSING, s4, 1)],
        )
        status(
            "companion_nonexistent_user_debug_on",
            "a user that does not exist, with site debugging on",
            [_status(course, MISSING, 1)],
        )
    finally:
        site.set_debug(0)


PEOPLE_DOMAIN = "people.example.edu"


def _account(
    number: int,
    auth: str,
    *,
    password: bool = False,
    createpassword: bool = False,
    username: str | None = None,
    email: str | None = None,
) -> dict[str, int | str]:
    """A new account as enrolstream creates one: no password unless asked."""
    user: dict[str, int | str] = {
        "username": username or f"p{number:09d}",
        "auth": auth,
        "firstname": f"Given{number}",
        "lastname": f"Family{number}",
        "middlename": f"Middle{number}",
        "email": email or f"p{number:09d}@{PEOPLE_DOMAIN}",
        "idnumber": f"{number:09d}",
    }
    if password:
        user["password"] = "Passw0rd!x"  # noqa: S105 - a lab site's set-up user
    if createpassword:
        user["createpassword"] = "1"
    return user


def record_people(rec: Recorder) -> None:  # noqa: PLR0915 - one straight script of cases
    """Sequence 4: accounts for new people (create, collide, update) and instructors' roles."""
    site = rec.site
    course = rec.case(
        "people_setup_create_course",
        "set-up: a course for instructors and students",
        "core_course_create_courses",
        _rows(
            "courses",
            [
                {
                    "fullname": "People test Winter 2024",
                    "shortname": "PEOPLE101Winter2024",
                    "categoryid": 1,
                    "idnumber": "202401-PEOPLE101",
                }
            ],
        ),
    )[0]["id"]
    made = rec.case(
        "people_setup_create_users",
        "set-up: a teacher and four students (made by hand, not by enrolstream)",
        "core_user_create_users",
        _rows(
            "users",
            [_account(600000 + n, "manual", password=True) for n in range(1, 6)],
        ),
    )
    teacher, s1, s2, s3, s4 = ids = [u["id"] for u in made]
    rec.facts.watched |= set(ids)
    everyone = (teacher, s1, s2, s3, s4)
    rec.case(
        "people_setup_enrol",
        "set-up: the editing teacher and two students enrolled",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [{"roleid": EDITINGTEACHER, "userid": teacher, "courseid": course}]
            + [{"roleid": STUDENT, "userid": u, "courseid": course} for u in (s1, s2)],
        ),
        scope=Scope(course, everyone),
    )

    def create(name: str, summary: str, users: list[dict[str, int | str]]) -> Any:
        return rec.case(
            name,
            summary,
            "core_user_create_users",
            _rows("users", users),
            users=tuple(str(u["username"]) for u in users),
        )

    taken = f"p{600002:09d}"  # s1's username
    taken_email = f"p{600002:09d}@{PEOPLE_DOMAIN}"
    created = create(
        "people_create_manual_createpassword",
        "auth=manual, no password, createpassword=1: Moodle makes one and mails it",
        [_account(600101, "manual", createpassword=True)],
    )
    manual = created[0]["id"]
    create(
        "people_create_manual_no_password",
        "auth=manual with neither password nor createpassword",
        [_account(600102, "manual")],
    )
    create(
        "people_create_nologin_createpassword",
        "auth=nologin, createpassword=1",
        [_account(600103, "nologin", createpassword=True)],
    )
    create(
        "people_create_nologin_no_password",
        "auth=nologin with neither password nor createpassword",
        [_account(600104, "nologin")],
    )
    ldap = create(
        "people_create_ldap_no_password",
        "auth=ldap (installed, not enabled), no password at all",
        [_account(600105, "ldap")],
    )[0]["id"]
    create(
        "people_create_oauth2_no_password",
        "auth=oauth2, no password at all",
        [_account(600106, "oauth2")],
    )
    create(
        "people_create_saml2_not_installed",
        "auth=saml2, a plugin this site does not have",
        [_account(600107, "saml2")],
    )
    create(
        "people_create_oidc_not_installed",
        "auth=oidc, a plugin this site does not have",
        [_account(600108, "oidc")],
    )
    create(
        "people_create_username_taken",
        "a username another account has",
        [_account(600109, "ldap", username=taken)],
    )
    create(
        "people_create_email_taken",
        "an e-mail address another account has",
        [_account(600110, "ldap", email=taken_email)],
    )
    create(
        "people_create_email_taken_other_case",
        "an e-mail address another account has, in other case",
        [_account(600111, "ldap", email=taken_email.upper())],
    )
    create(
        "people_create_email_invalid",
        "an e-mail address that is not one",
        [_account(600112, "ldap", email="not-an-address")],
    )
    site.set_debug(DEBUG_DEVELOPER)
    try:
        create(
            "people_create_manual_no_password_debug_on",
            "no password, with site debugging on",
            [_account(600102, "manual")],
        )
        create(
            "people_create_saml2_not_installed_debug_on",
            "a missing auth plugin, with site debugging on",
            [_account(600107, "saml2")],
        )
        create(
            "people_create_username_taken_debug_on",
            "a taken username, with site debugging on",
            [_account(600109, "ldap", username=taken)],
        )
        create(
            "people_create_email_taken_other_case_debug_on",
            "a taken e-mail in other case, with site debugging on",
            [_account(600111, "ldap", email=taken_email.upper())],
        )
    finally:
        site.set_debug(0)

    def lookup(name: str, summary: str, field: str, values: list[str]) -> None:
        rec.case(
            name,
            summary,
            "core_user_get_users_by_field",
            [("field", field), *[(f"values[{i}]", v) for i, v in enumerate(values)]],
        )

    lookup(
        "people_lookup_usernames",
        "the collision check: a taken and a free username in one call",
        "username",
        [taken, f"p{600199:09d}"],
    )
    lookup(
        "people_lookup_emails",
        "the collision check: a taken e-mail as stored and in other case",
        "email",
        [taken_email, taken_email.upper()],
    )
    site.role_capability("moodle/site:viewuseridentity", allow=True)
    try:
        lookup(
            "people_lookup_emails_viewuseridentity",
            "the same once the token's role has moodle/site:viewuseridentity",
            "email",
            [taken_email, taken_email.upper()],
        )
    finally:
        site.role_capability("moodle/site:viewuseridentity", allow=False)

    def update(
        name: str,
        summary: str,
        rows: list[dict[str, int | str]],
        users: tuple[str, ...],
    ) -> None:
        rec.case(
            name, summary, "core_user_update_users", _rows("users", rows), users=users
        )

    mine = (f"p{600101:09d}",)
    both = (f"p{600101:09d}", f"p{600105:09d}")
    update(
        "people_update_names",
        "first, middle and last name of an account enrolstream made",
        [
            {
                "id": manual,
                "firstname": "Renamed",
                "middlename": "Middle",
                "lastname": "Family-Smith",
            }
        ],
        mine,
    )
    update(
        "people_update_email",
        "a new e-mail address",
        [{"id": manual, "email": f"renamed.600101@{PEOPLE_DOMAIN}"}],
        mine,
    )
    update(
        "people_update_unchanged",
        "the same values again",
        [
            {
                "id": manual,
                "firstname": "Renamed",
                "lastname": "Family-Smith",
                "email": f"renamed.600101@{PEOPLE_DOMAIN}",
            }
        ],
        mine,
    )
    update(
        "people_update_email_taken",
        "an e-mail address another account has",
        [{"id": manual, "email": taken_email}],
        mine,
    )
    update(
        "people_update_email_taken_other_case",
        "an e-mail address another account has, in other case",
        [{"id": manual, "email": taken_email.upper()}],
        mine,
    )
    update(
        "people_update_email_invalid",
        "an e-mail address that is not one",
        [{"id": manual, "email": "not-an-address"}],
        mine,
    )
    update(
        "people_update_nonexistent_user",
        "a user id that does not exist",
        [{"id": MISSING, "firstname": "Nobody"}],
        (),
    )
    update(
        "people_update_batch_one_bad",
        "batch [a good rename, a taken e-mail]",
        [
            {"id": ldap, "firstname": "Batch", "lastname": "Renamed"},
            {"id": manual, "email": taken_email},
        ],
        both,
    )

    def roles(
        name: str, summary: str, function: str, rows: list[dict[str, int | str]]
    ) -> None:
        key = "assignments" if function == "core_role_assign_roles" else "unassignments"
        rec.case(
            name,
            summary,
            function,
            _rows(key, rows),
            scope=Scope(course, (*everyone, manual)),
        )

    rec.facts.watched |= {manual}
    rec.case(
        "people_enrol_instructor",
        "an instructor added: enrolled as editingteacher (a second contact)",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [{"roleid": EDITINGTEACHER, "userid": manual, "courseid": course}],
        ),
        scope=Scope(course, (*everyone, manual)),
    )
    roles(
        "people_instructor_to_secondary_assign",
        "editing teacher to teacher, step 1: teacher assigned (both held)",
        "core_role_assign_roles",
        [_at(course, TEACHER, manual)],
    )
    roles(
        "people_instructor_to_secondary_unassign",
        "step 2: editingteacher unassigned: exactly one role left",
        "core_role_unassign_roles",
        [_at(course, EDITINGTEACHER, manual)],
    )
    roles(
        "people_student_also_teaches",
        "a student of the course also teaches it: teacher assigned beside student",
        "core_role_assign_roles",
        [_at(course, TEACHER, s1)],
    )
    roles(
        "people_student_drops_keeps_teaching",
        "that person drops as a student: student unassigned, teacher kept",
        "core_role_unassign_roles",
        [_at(course, STUDENT, s1)],
    )
    roles(
        "people_instructor_removed",
        "an instructor removed: their only role unassigned",
        "core_role_unassign_roles",
        [_at(course, TEACHER, manual)],
    )
    update(
        "people_setup_suspend_account",
        "set-up: a student's account suspended (user.suspended = 1)",
        [{"id": s3, "suspended": 1}],
        (f"p{600004:09d}",),
    )
    rec.case(
        "people_enrol_suspended_account",
        "enrol the user whose account is suspended",
        "enrol_manual_enrol_users",
        _rows("enrolments", [{"roleid": STUDENT, "userid": s3, "courseid": course}]),
        scope=Scope(course, everyone),
    )
    for name, option in (
        ("people_roster_suspended_account_onlyactive", "onlyactive"),
        ("people_roster_suspended_account_onlysuspended", "onlysuspended"),
    ):
        rec.case(
            name,
            f"the course roster with {option}=1 (the suspended account is enrolled)",
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(course)),
                ("options[0][name]", "userfields"),
                ("options[0][value]", "id"),
                ("options[1][name]", option),
                ("options[1][value]", "1"),
            ],
        )


# --- sequence 5: course shells and groups per section -----------------------------

#: The term of sequence 5's shells: 2025/Winter, 6 January to 25 April (UTC midnights).
SHELL_START, SHELL_END = 1736121600, 1745539200
SHELL_CATEGORY = "2025Winter-SHELL"


def _course_rows(site: Site, shortnames: tuple[str, ...]) -> dict[str, Any]:
    """The ``{course}`` rows of ``shortnames`` as the database holds them."""
    names = ",".join(f"'{name}'" for name in shortnames)
    rows = site.sql(
        "SELECT coalesce(json_agg(json_build_object('id', c.id, 'shortname',"
        " c.shortname, 'idnumber', c.idnumber, 'fullname', c.fullname, 'category',"
        " c.category, 'visible', c.visible, 'startdate', c.startdate, 'enddate',"
        " c.enddate, 'instances', (SELECT coalesce(json_agg(e.enrol || ':' || e.status"
        " ORDER BY e.sortorder, e.id), '[]') FROM mdl_enrol e WHERE e.courseid = c.id))"
        f" ORDER BY c.id), '[]') FROM mdl_course c WHERE c.shortname IN ({names})"
    )
    return {"db_course (SQL)": rows}


def _group_rows(site: Site, course: int) -> dict[str, Any]:
    """The course's ``{groups}`` and ``{groups_members}`` rows."""
    groups = site.sql(
        "SELECT coalesce(json_agg(json_build_object('id', g.id, 'name', g.name,"
        " 'idnumber', g.idnumber, 'description', g.description) ORDER BY g.id), '[]')"
        f" FROM mdl_groups g WHERE g.courseid = {course}"
    )
    members = site.sql(
        "SELECT coalesce(json_agg(json_build_object('groupid', m.groupid, 'userid',"
        " m.userid, 'component', m.component) ORDER BY m.groupid, m.userid), '[]')"
        " FROM mdl_groups_members m JOIN mdl_groups g ON g.id = m.groupid"
        f" WHERE g.courseid = {course}"
    )
    return {"db_groups (SQL)": groups, "db_groups_members (SQL)": members}


def _shell(
    number: int, category: int | str, *, idnumber: str | None = None, visible: int = 0
) -> dict[str, int | str]:
    """A course shell as ``mapping generate --create-missing`` makes one."""
    shortname = f"SHELL{number}Winter2025"
    return {
        "fullname": f"Shell {number} Winter 2025",
        "shortname": shortname,
        "categoryid": category,
        "idnumber": idnumber or shortname,
        "startdate": SHELL_START,
        "enddate": SHELL_END,
        "visible": visible,
    }


def _member(groupid: int, userid: int) -> dict[str, int | str]:
    return {"groupid": groupid, "userid": userid}


def record_courses(rec: Recorder) -> int:
    """Sequence 5, part 1: categories and course shells (hidden, dated, tied by idnumber).

    Returns the shell the group cases use.
    """
    site = rec.site
    shells = ("SHELL101Winter2025", "SHELL102Winter2025", "SHELL103Winter2025")

    def courses(name: str, summary: str, rows: list[dict[str, int | str]]) -> Any:
        return rec.case(
            name,
            summary,
            "core_course_create_courses",
            _rows("courses", rows),
            extra=lambda: _course_rows(site, shells),
        )

    category = rec.case(
        "courses_create_category",
        "a category for the term, keyed by idnumber",
        "core_course_create_categories",
        _rows(
            "categories",
            [{"name": "Winter 2025 (shells)", "idnumber": SHELL_CATEGORY, "parent": 0}],
        ),
    )[0]["id"]
    rec.case(
        "courses_create_category_duplicate_idnumber",
        "a second category with the same idnumber",
        "core_course_create_categories",
        _rows(
            "categories",
            [{"name": "Winter 2025 again", "idnumber": SHELL_CATEGORY, "parent": 0}],
        ),
    )
    for name, value in (
        ("courses_get_categories_by_idnumber", SHELL_CATEGORY),
        ("courses_get_categories_not_found", "2099Nowhere"),
    ):
        rec.case(
            name,
            f"core_course_get_categories by idnumber {value!r}",
            "core_course_get_categories",
            [("criteria[0][key]", "idnumber"), ("criteria[0][value]", value)],
        )
    shell = courses(
        "courses_create_shell",
        "a shell: category, start and end dates, hidden, idnumber = shortname",
        [_shell(101, category)],
    )[0]["id"]
    for name, value in (
        ("courses_get_by_idnumber_hidden", "SHELL101Winter2025"),
        ("courses_get_by_idnumber_not_found", "SHELL199Winter2025"),
    ):
        rec.case(
            name,
            f"core_course_get_courses_by_field idnumber={value}",
            "core_course_get_courses_by_field",
            [("field", "idnumber"), ("value", value)],
        )
    courses(
        "courses_create_duplicate_shortname",
        "the shell's shortname again, another idnumber",
        [_shell(101, category, idnumber="SHELL101-other")],
    )
    courses(
        "courses_create_duplicate_idnumber",
        "another shortname with the shell's idnumber",
        [_shell(102, category, idnumber="SHELL101Winter2025")],
    )
    courses(
        "courses_create_batch_one_duplicate",
        "batch [a new shell, a taken idnumber]",
        [_shell(102, category), _shell(103, category, idnumber="SHELL101Winter2025")],
    )
    courses(
        "courses_create_missing_category",
        "a category id that does not exist",
        [_shell(102, MISSING)],
    )
    courses(
        "courses_create_visible",
        "a second shell, visible, in the same category",
        [_shell(102, category, visible=1)],
    )
    for name, summary, rows in (
        ("courses_reveal", "the hidden shell made visible", [{"id": shell}]),
        (
            "courses_reveal_missing_course",
            "a course that does not exist",
            [{"id": MISSING}],
        ),
        (
            "courses_reveal_batch_one_missing",
            "batch [the shell, a missing course]",
            [
                {"id": shell},
                {"id": MISSING},
            ],
        ),
    ):
        rec.case(
            name,
            summary,
            "core_course_update_courses",
            _rows("courses", [{**row, "visible": 1} for row in rows]),
            extra=lambda: _course_rows(site, shells),
        )
    return int(shell)


def record_groups(rec: Recorder, course: int) -> None:  # noqa: PLR0915 - one straight script of cases
    """Sequence 5, part 2: a group per section, members joining and leaving."""
    site = rec.site
    made = rec.case(
        "groups_setup_create_users",
        "set-up: a teacher and five students",
        "core_user_create_users",
        _rows(
            "users",
            [_account(700000 + n, "manual", password=True) for n in range(1, 7)],
        ),
    )
    teacher, s1, s2, s3, s4, s5 = ids = [u["id"] for u in made]
    rec.facts.watched |= set(ids)
    everyone = (teacher, s1, s2, s3, s4, s5)
    rec.case(
        "groups_setup_enrol",
        "set-up: the editing teacher and three students (s4 and s5 not enrolled)",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [{"roleid": EDITINGTEACHER, "userid": teacher, "courseid": course}]
            + [
                {"roleid": STUDENT, "userid": u, "courseid": course}
                for u in (s1, s2, s3)
            ],
        ),
        scope=Scope(course, everyone),
    )

    def groups(name: str, summary: str, rows: list[dict[str, int | str]]) -> Any:
        return rec.case(
            name,
            summary,
            "core_group_create_groups",
            _rows("groups", rows),
            extra=lambda: _group_rows(site, course),
        )

    def members(
        name: str, summary: str, function: str, rows: list[dict[str, int | str]]
    ) -> None:
        rec.case(
            name,
            summary,
            function,
            _rows("members", rows),
            extra=lambda: _group_rows(site, course),
        )

    def listing(name: str, summary: str) -> None:
        rec.case(
            name,
            summary,
            "core_group_get_course_groups",
            [("courseid", str(course))],
            extra=lambda: _group_rows(site, course),
        )

    def group(key: str, name: str) -> dict[str, int | str]:
        return {"courseid": course, "name": name, "description": "", "idnumber": key}

    first, second = (
        g["id"]
        for g in groups(
            "groups_create_with_idnumber",
            "a group per section, idnumber = the section's key",
            [
                group("2025|WINTER|01|SHELL6101|LEC|02", "SHELL6101 LEC 02"),
                group("2025|WINTER|01|SHELL8101|LEC|02", "SHELL8101 LEC 02"),
            ],
        )
    )
    groups(
        "groups_create_duplicate_idnumber",
        "another group with a taken idnumber",
        [group("2025|WINTER|01|SHELL6101|LEC|02", "Another name")],
    )
    groups(
        "groups_create_duplicate_name",
        "another group with a taken name",
        [group("2025|WINTER|01|SHELL6101|LAB|02", "SHELL6101 LEC 02")],
    )
    groups(
        "groups_create_without_description",
        "a group without the description key",
        [{"courseid": course, "name": "No description", "idnumber": "nodescription"}],
    )
    groups(
        "groups_create_batch_one_bad",
        "batch [a new group, a taken idnumber]",
        [
            group("2025|WINTER|01|SHELL6101|LEC|03", "SHELL6101 LEC 03"),
            group("2025|WINTER|01|SHELL8101|LEC|02", "Taken key"),
        ],
    )
    listing(
        "groups_list_after_rollback",
        "core_group_get_course_groups right after the rolled-back batch",
    )
    groups(
        "groups_create_after_rollback",
        "the group of the rolled-back batch again, alone",
        [group("2025|WINTER|01|SHELL6101|LEC|03", "SHELL6101 LEC 03")],
    )
    groups(
        "groups_create_other_group",
        "another group of the course (any group change clears the course's group cache)",
        [group("2025|WINTER|01|SHELL6101|LEC|04", "SHELL6101 LEC 04")],
    )
    listing("groups_list", "core_group_get_course_groups once a group was created")
    third = groups(
        "groups_create_after_cache_cleared",
        "the group of the rolled-back batch again, now that the cache was cleared",
        [group("2025|WINTER|01|SHELL6101|LEC|03", "SHELL6101 LEC 03")],
    )[0]["id"]
    rec.case(
        "groups_list_unknown_course",
        "core_group_get_course_groups of a course that does not exist",
        "core_group_get_course_groups",
        [("courseid", str(MISSING))],
    )
    add, delete = "core_group_add_group_members", "core_group_delete_group_members"
    members(
        "groups_add_members",
        "s1 and s2 into the first group, s3 into the second",
        add,
        [_member(first, s1), _member(first, s2), _member(second, s3)],
    )
    members("groups_add_members_again", "s1 again", add, [_member(first, s1)])
    members(
        "groups_add_member_not_enrolled",
        "s4, not enrolled in the course",
        add,
        [_member(first, s4)],
    )
    members(
        "groups_add_members_batch_one_bad",
        "batch [s1 to the third group, s4 not enrolled, s2 to the third group]",
        add,
        [_member(third, s1), _member(third, s4), _member(third, s2)],
    )
    members(
        "groups_add_member_unknown_group",
        "a group id that does not exist",
        add,
        [_member(MISSING, s1)],
    )
    members(
        "groups_add_member_unknown_user",
        "a user id that does not exist",
        add,
        [_member(first, MISSING)],
    )
    rec.case(
        "groups_setup_remove_role",
        "set-up: s3's student role taken away (a drop by role removal)",
        "core_role_unassign_roles",
        _rows("unassignments", [_at(course, STUDENT, s3)]),
        scope=Scope(course, everyone),
    )
    members(
        "groups_add_member_without_role",
        "s3, enrolled with no role left, into the third group",
        add,
        [_member(third, s3)],
    )
    rec.case(
        "groups_setup_enrol_suspended",
        "set-up: s5 enrolled suspended",
        "enrol_manual_enrol_users",
        _rows(
            "enrolments",
            [{"roleid": STUDENT, "userid": s5, "courseid": course, "suspend": 1}],
        ),
        scope=Scope(course, everyone),
    )
    members(
        "groups_add_member_suspended",
        "s5, whose enrolment is suspended, into the second group",
        add,
        [_member(second, s5)],
    )
    rec.case(
        "groups_enrolled_users_with_groups",
        "core_enrol_get_enrolled_users with userfields id,groups",
        "core_enrol_get_enrolled_users",
        [
            ("courseid", str(course)),
            ("options[0][name]", "userfields"),
            ("options[0][value]", "id,groups"),
        ],
    )
    members(
        "groups_move_member_add",
        "a swap, step 1: s2 into the second group (still in the first)",
        add,
        [_member(second, s2)],
    )
    members(
        "groups_move_member_delete",
        "step 2: s2 out of the first group",
        delete,
        [_member(first, s2)],
    )
    members(
        "groups_delete_member_not_member",
        "s2 out of the first group again (not a member)",
        delete,
        [_member(first, s2)],
    )
    members(
        "groups_delete_member_not_enrolled",
        "s4 (never enrolled) out of the first group",
        delete,
        [_member(first, s4)],
    )
    members(
        "groups_delete_member_unknown_group",
        "a group id that does not exist",
        delete,
        [_member(MISSING, s1)],
    )
    members(
        "groups_delete_members_batch_one_bad",
        "batch [s1 out of the first group, a group that does not exist]",
        delete,
        [_member(first, s1), _member(MISSING, s1)],
    )
    rec.case(
        "groups_unenrol_member",
        "s1 (in the first group) unenrolled",
        "enrol_manual_unenrol_users",
        _rows("enrolments", [{"userid": s1, "courseid": course}]),
        scope=Scope(course, everyone),
        extra=lambda: _group_rows(site, course),
    )
    site.set_debug(DEBUG_DEVELOPER)
    try:
        groups(
            "groups_create_duplicate_name_debug_on",
            "a taken name, with site debugging on",
            [group("2025|WINTER|01|SHELL6101|LAB|02", "SHELL6101 LEC 02")],
        )
        groups(
            "groups_create_without_description_debug_on",
            "no description key, with site debugging on",
            [{"courseid": course, "name": "No description", "idnumber": "nodesc"}],
        )
        members(
            "groups_add_member_not_enrolled_debug_on",
            "a member not enrolled, with site debugging on",
            add,
            [_member(first, s4)],
        )
    finally:
        site.set_debug(0)


def record_shells_and_groups(rec: Recorder) -> None:
    """Sequence 5: course shells, then groups in one of them."""
    record_groups(rec, record_courses(rec))


SEQUENCES: dict[str, Callable[[Recorder], None]] = {
    "roles": record_roles,
    "companion": record_companion,
    "people": record_people,
    "courses": record_shells_and_groups,
}
#: Sequences whose replay rebuilds the site from nothing: they need a fresh site.
FRESH_SITE = frozenset({"roles"})


def site_from_environment() -> Site:
    """The harness site MOODLE_URL and MOODLE_TOKEN name, its version asked."""
    url, token = os.environ.get("MOODLE_URL"), os.environ.get("MOODLE_TOKEN")
    if not url or not token:
        sys.exit(
            "MOODLE_URL and MOODLE_TOKEN must be set (source the harness env file)"
        )
    harness = os.environ.get("MOODLE_HARNESS_DIR")
    site = Site(
        url.rstrip("/"),
        token,
        Path(os.environ.get("MOODLE_DIR", "/opt/moodle")),
        Path(harness) if harness else None,
    )
    info = site.call("core_webservice_get_site_info", [])
    site.version = {"release": info["release"], "version": info["version"]}
    return site


def main() -> None:
    """Record the named sequence on the site MOODLE_URL names."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequence", choices=sorted(SEQUENCES))
    parser.add_argument("--out", type=Path, default=Path("tests/data/moodle-golden"))
    args = parser.parse_args()
    site = site_from_environment()
    extra = site.sql(
        "SELECT (SELECT count(*) FROM mdl_course WHERE id > 1)"
        " + (SELECT count(*) FROM mdl_user WHERE id > 3)"
    )
    if extra and args.sequence in FRESH_SITE:
        sys.exit("the site is not fresh (courses or users beyond the defaults exist)")
    recorder = Recorder(site, args.out)
    SEQUENCES[args.sequence](recorder)
    for name, summary in recorder.written:
        print(f"| {name} | {summary} |")


if __name__ == "__main__":
    main()
