"""Reading and replaying the recorded Moodle 5.1 exchanges in tests/data/moodle-golden.

INDEX.md lists each recorded sequence as a ``## Cases…`` table, in the order
the cases ran on their site. These helpers load a case, rebuild its request
(elided bulk requests included), send it to a simulator and compare the answer
with the recording; each sequence's test module owns its site set-up and its
list of tolerated differences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sandbox.moodle_sim.server import ENDPOINT
from sandbox.moodle_sim.state import ROLE_SHORTNAMES, MoodleState
from tests.conftest import GOLDEN_DIR

GOLDEN = GOLDEN_DIR


def index_sections() -> dict[str, list[str]]:
    """Case names of each ``## Cases…`` table in INDEX.md, by heading, in order."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (GOLDEN / "INDEX.md").read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            cases = heading.startswith("Cases")
            current = sections.setdefault(heading, []) if cases else None
        row = re.match(r"\| ([a-z0-9_]+) \|", line)
        if current is not None and row and row[1] != "file":
            current.append(row[1])
    return sections


SECTIONS = index_sections()


def load(case: str) -> dict[str, Any]:
    """One recorded case file."""
    return dict(json.loads((GOLDEN / f"{case}.json").read_text()))


def expand_omitted(params: dict[str, Any], total: int) -> list[tuple[str, str]]:
    """Rebuild a recorded request whose middle was elided as ``"...": "N more keys"``."""
    keys = list(params)
    items = [k for k in keys if k.startswith("enrolments[")]
    first, last = keys.index(items[0]), keys.index(items[-1])
    index = re.compile(r"enrolments\[(\d+)\]\[(\w+)\]")
    parsed = [(int(m[1]), m[2], params[k]) for k in items if (m := index.fullmatch(k))]
    count = max(i for i, _, _ in parsed) + 1
    fields = [f for i, f, _ in parsed if i == 0]
    start = {f: int(v) for i, f, v in parsed if i == 0}
    # Each field moves linearly (userid) or stays put: fit it on its furthest visible item.
    far = {f: (i, int(v)) for i, f, v in sorted(parsed) if i > 0}
    body = [
        (
            f"enrolments[{i}][{f}]",
            str(start[f] + (far[f][1] - start[f]) * i // far[f][0]),
        )
        for i in range(count)
        for f in fields
    ]
    rebuilt = (
        [(k, params[k]) for k in keys[:first]]
        + body
        + [(k, params[k]) for k in keys[last + 1 :]]
    )
    assert len(rebuilt) == total, "the elided request could not be rebuilt"
    assert all(dict(rebuilt)[k] == v for k, v in params.items() if k != "..."), (
        "rebuild drift"
    )
    return rebuilt


@dataclass
class Observed:
    """What the simulator answered for one case and the state facts checked after it.

    ``transport_error`` names the client's exception when no HTTP answer came
    (status, content type and body are then None).
    """

    status: int | None
    content_type: str | None
    body: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    transport_error: str | None = None


async def send(
    session: aiohttp.ClientSession, base_url: str, record: dict[str, Any], token: str
) -> Observed:
    """Send the recorded request with ``token`` in place of ``<TOKEN>``."""
    url = base_url + ENDPOINT
    raw = record.get("request_raw")
    if raw is not None:
        request = session.post(
            url, data=raw["body"].replace("<TOKEN>", token), headers=raw["headers"]
        )
    else:
        recorded = record["request_params"].items()
        params = {k: token if v == "<TOKEN>" else v for k, v in recorded}
        pairs = (
            expand_omitted(params, record["request_param_count"])
            if "..." in params
            else [(k, str(v)) for k, v in params.items()]
        )
        if record["http_method"] == "GET":
            request = session.get(url, params=pairs)
        else:
            request = session.post(url, data=pairs)
    try:
        async with request as response:
            return Observed(
                response.status, response.headers["Content-Type"], await response.text()
            )
    except aiohttp.ClientConnectorError as exc:
        return Observed(None, None, None, transport_error=type(exc.os_error).__name__)


async def enrolled_users(
    session: aiohttp.ClientSession,
    base_url: str,
    token: str,
    courseid: int,
    *,
    onlyactive: bool,
) -> list[dict[str, Any]] | None:
    """``core_enrol_get_enrolled_users`` of a course (None when Moodle answers an error)."""
    data = {
        "wstoken": token,
        "wsfunction": "core_enrol_get_enrolled_users",
        "moodlewsrestformat": "json",
        "courseid": str(courseid),
    }
    if onlyactive:
        data |= {"options[0][name]": "onlyactive", "options[0][value]": "1"}
    async with session.post(base_url + ENDPOINT, data=data) as response:
        body = await response.json()
    return body if isinstance(body, list) else None


@dataclass
class SimulatedSite:
    """A simulated site as a recording's replay reads it back: state, URL, token."""

    state: MoodleState
    session: aiohttp.ClientSession
    url: str
    token: str

    async def facts(
        self, record: dict[str, Any], sent_before: int, watched: set[int]
    ) -> dict[str, Any]:
        """``state_after`` of a recorded case (sequences 2 and 3) as the simulator shows it.

        ``sent_before`` is the number of notifications before the call; only those
        to ``watched`` users count, as the recorder's SQL counted them.
        """
        scope = record.get("state_scope")
        if scope is None:
            return {}
        state, course, users = self.state, scope["course"], scope["users"]
        sent = [
            {
                "to_userid": n.useridto,
                "subject": n.subject,
                "from_userid": n.useridfrom,
                "name": n.name,
            }
            for n in state.notifications[sent_before:]
            if n.useridto in watched
        ]
        if scope.get("count_only"):
            return {
                "enrolled_in_course_after (SQL count)": len(state.enrolments(course)),
                "notifications sent during the call (SQL)": sent,
            }
        listed = await self._roster(course, onlyactive=False)
        active = await self._roster(course, onlyactive=True)
        return {
            "db_user_enrolments (harness SQL ground truth)": [
                {
                    "userid": e.userid,
                    "enrol": "manual",
                    "status": e.status,
                    "status_meaning": "suspended" if e.status else "active",
                    "timestart": e.timestart,
                    "timeend": e.timeend,
                    "roles": [ROLE_SHORTNAMES[r] for r in e.roleids],
                }
                for e in state.enrolments(course)
                if e.userid in users
            ],
            # Role order is the roles' sortorder, which is their id on these sites;
            # every assignment here is manual (component '').
            "db_role_assignments in the course context (SQL)": [
                {"userid": uid, "role": ROLE_SHORTNAMES[r], "component": ""}
                for uid in sorted(users)
                for r in sorted(state.roles_of(course, uid))
            ],
            "get_enrolled_users ids (default options)": sorted(listed),
            "get_enrolled_users ids (onlyactive=1)": sorted(active),
            "get_enrolled_users roles of these users (default options)": {
                str(uid): listed[uid] for uid in users if uid in listed
            },
            "notifications sent during the call (SQL)": sent,
        }

    async def _roster(self, courseid: int, *, onlyactive: bool) -> dict[int, list[str]]:
        users = await enrolled_users(
            self.session, self.url, self.token, courseid, onlyactive=onlyactive
        )
        assert users is not None, f"course {courseid} has no roster"
        return {u["id"]: [role["shortname"] for role in u["roles"]] for u in users}


def assert_answer(
    record: dict[str, Any],
    observed: Observed,
    *,
    sim_url: str,
    wwwroot: str,
    mask: Callable[[Any], Any] = lambda value: value,
) -> None:
    """Transport outcome, status, content type and body as recorded.

    The simulator's URL is read as the recorded ``wwwroot``; ``mask`` is applied
    to both JSON bodies (the caller's tolerated differences). A transport error
    is compared by the exception's kind, not its text.
    """
    recorded_error = record.get("transport_error")
    assert observed.transport_error == (
        recorded_error.split(":")[0] if recorded_error else None
    )
    assert observed.status == record["http_status"]
    assert observed.content_type == record["response_content_type"]
    if observed.body is None:
        assert record["response_body"] is None
        return
    text = observed.body.replace(sim_url, wwwroot)
    if record["response_body_kind"] == "json":
        actual = json.dumps(mask(json.loads(text)))
        assert actual == json.dumps(mask(record["response_body"]))
    else:
        assert text == record["response_body"]
