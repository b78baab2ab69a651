"""Moodle simulator benchmark: its own throughput with the zero-latency model.

Prints two figure sets, measured through a real aiohttp client on a local port:

* enrol: ``--courses`` x ``--per-course`` enrolments (default 2,000 x 25)
  sent as ``enrol_manual_enrol_users`` calls of ``--batch`` rows (default 166,
  the most six-field rows that fit PHP's default max_input_vars of 1000),
  rows per second;
* rosters: one ``core_enrol_get_enrolled_users`` per course with
  ``userfields=id,idnumber,username,roles``, then again with
  ``onlysuspended=1`` (every tenth enrolment is suspended), reads per second.

Bodies are url-encoded before the clock starts, as ``connectors/moodle/client.py``
sends them (a string body, not aiohttp ``FormData``, which alone costs ~12 ms
per 1,000-field call), so the figures are the simulator's cost plus the HTTP
round trip, with no simulated PHP latency: they bound what an end-to-end or
reconcile benchmark can reach against it.
Run: ``.venv/bin/python bench/moodle_sim.py [--courses 2000 --per-course 25]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.state import MoodleState

TOKEN = "b" * 32
ROSTER_FIELDS = "id,idnumber,username,roles"
SUSPENDED_EVERY = 10
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def build_site(courses: int, users: int) -> tuple[MoodleState, list[int], list[int]]:
    """A site with ``courses`` empty courses and ``users`` accounts."""
    state = MoodleState()
    userids = [
        state.add_user(f"p{n:09d}", idnumber=f"P{n:09d}", firstname="F", lastname="L")
        for n in range(users)
    ]
    courseids = [state.add_course(f"C{n}", f"Course {n}") for n in range(courses)]
    return state, userids, courseids


def enrol_rows(
    userids: list[int], courseids: list[int], per_course: int
) -> list[dict[str, int]]:
    """``per_course`` distinct users per course, spread so each user is in several."""
    rows: list[dict[str, int]] = []
    for c, courseid in enumerate(courseids):
        for k in range(per_course):
            n = len(rows)
            rows.append(
                {
                    "roleid": 5,
                    "userid": userids[(c * per_course + k) % len(userids)],
                    "courseid": courseid,
                    "timestart": 0,
                    "timeend": 0,
                    "suspend": 1 if n % SUSPENDED_EVERY == 0 else 0,
                }
            )
    return rows


def form(function: str, items: list[tuple[str, str]]) -> str:
    """The url-encoded body: routing fields first (as the client sends them)."""
    return urlencode(
        [
            ("wstoken", TOKEN),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
            *items,
        ]
    )


async def post(session: aiohttp.ClientSession, url: str, body: str) -> Any:
    """One call; a Moodle error object aborts the benchmark."""
    async with session.post(url, data=body, headers=FORM_HEADERS) as response:
        body = await response.json()
    if isinstance(body, dict) and "exception" in body:
        raise RuntimeError(f"simulator answered an error: {body}")
    return body


async def bench_enrol(
    session: aiohttp.ClientSession, url: str, rows: list[dict[str, int]], batch: int
) -> float:
    """Seconds to send every row in ``batch``-row enrol calls, one at a time."""
    calls = []
    for start in range(0, len(rows), batch):
        items = [
            (f"enrolments[{n}][{key}]", str(value))
            for n, row in enumerate(rows[start : start + batch])
            for key, value in row.items()
        ]
        calls.append(form("enrol_manual_enrol_users", items))
    started = time.perf_counter()
    for body in calls:
        await post(session, url, body)
    return time.perf_counter() - started


async def bench_rosters(
    session: aiohttp.ClientSession,
    url: str,
    courseids: list[int],
    option: tuple[str, str],
) -> tuple[float, int]:
    """Seconds to read every course's roster with one option, and users read."""
    bodies = [
        form(
            "core_enrol_get_enrolled_users",
            [
                ("courseid", str(courseid)),
                ("options[0][name]", option[0]),
                ("options[0][value]", option[1]),
            ],
        )
        for courseid in courseids
    ]
    read = 0
    started = time.perf_counter()
    for body in bodies:
        read += len(await post(session, url, body))
    return time.perf_counter() - started, read


async def main() -> None:
    """Build the site, run the three measurements and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--courses", type=int, default=2000)
    parser.add_argument("--per-course", type=int, default=25)
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=166)
    args = parser.parse_args()

    state, userids, courseids = build_site(args.courses, args.users)
    rows = enrol_rows(userids, courseids, args.per_course)
    async with (
        MoodleSimulator(state, token=TOKEN) as sim,
        aiohttp.ClientSession() as session,
    ):
        url = sim.url + ENDPOINT
        enrol_s = await bench_enrol(session, url, rows, args.batch)
        print(
            f"moodle-sim benchmark: {len(rows):,} enrolments, {args.courses:,} courses, "
            f"{args.users:,} users, zero latency"
        )
        calls = -(-len(rows) // args.batch)
        print(
            f"  enrol: {len(rows):,} rows in {calls} calls of {args.batch}: "
            f"{enrol_s:.2f} s, {len(rows) / enrol_s:,.0f} rows/s"
        )
        for label, option in (
            ("userfields", ("userfields", ROSTER_FIELDS)),
            ("onlysuspended", ("onlysuspended", "1")),
        ):
            seconds, read = await bench_rosters(session, url, courseids, option)
            print(
                f"  rosters ({label}): {len(courseids):,} reads, {read:,} users: "
                f"{seconds:.2f} s, {len(courseids) / seconds:,.0f} reads/s"
            )


if __name__ == "__main__":
    asyncio.run(main())
