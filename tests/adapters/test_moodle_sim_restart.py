"""The simulator stopped and started like a real site: its state on disk, cut requests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from enrolstream.cli.moodle_sim import load_seed
from sandbox.broker import free_port
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.persist import StateFileError
from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_SERVICE_FUNCTIONS,
    SiteConfig,
)
from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState

TOKEN = "9" * 32
TERMINATED = (200, "text/html", "Terminated: 15\n")
ENROLSTREAM = [sys.executable, "-c", "from enrolstream.cli.root import main; main()"]
NOW = 1_760_000_000.0


def _enrol(userids: list[int], courseid: int) -> list[tuple[str, str]]:
    pairs = [
        ("wstoken", TOKEN),
        ("wsfunction", "enrol_manual_enrol_users"),
        ("moodlewsrestformat", "json"),
    ]
    for n, userid in enumerate(userids):
        pairs += [
            (f"enrolments[{n}][roleid]", "5"),
            (f"enrolments[{n}][userid]", str(userid)),
            (f"enrolments[{n}][courseid]", str(courseid)),
        ]
    return pairs


def _site(users: int = 3) -> tuple[MoodleState, list[int], int]:
    state = MoodleState()
    ids = [state.add_user(f"p{n}") for n in range(users)]
    return state, ids, state.add_course("C1", "Course 1")


async def _post(
    session: aiohttp.ClientSession, url: str, pairs: list[tuple[str, str]]
) -> tuple[int, str, Any]:
    """Status, content type and body (decoded JSON, or text)."""
    async with session.post(url + ENDPOINT, data=pairs) as response:
        if response.content_type == "application/json":
            return response.status, response.content_type, await response.json()
        return response.status, response.content_type, await response.text()


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (not a timing test)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.01)


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class TestSaveLoad:
    """MoodleState.save / MoodleState.load: the whole site through a file."""

    def test_load_gives_back_every_table(self, tmp_path: Path) -> None:
        """Users, courses, enrolments, roles, messages, tokens and counters survive."""
        state = MoodleState(clock=lambda: NOW, site=SiteConfig(sitename="Campus"))
        teacher = state.add_user("teacher", idnumber="T1")
        alice = state.add_user("alice", idnumber="000010001", suspended=True)
        bob = state.add_user("bob", firstname="Bob", lastname="B")
        course = state.add_course("C1", "Course 1", idnumber="EV1")
        state.add_course("C2", manual="disabled", categoryid=2)
        gone = state.add_course("C3", manual="enabled")
        state.enrol(course, teacher, EDITING_TEACHER)
        state.enrol(course, alice, 5, timestart=int(NOW) - 60, timeend=int(NOW) + 60)
        state.enrol(course, bob, 5, status=1)
        state.enrol(gone, bob, 4)
        state.unenrol(gone, bob)
        state.add_token("admintoken", 2, functions=("core_webservice_get_site_info",))
        state.next_context_id = 500
        assert len(state.notifications) == 2
        path = tmp_path / "site.json"

        state.save(path)
        loaded = MoodleState.load(path, clock=lambda: NOW)

        assert loaded.snapshot() == state.snapshot()
        assert loaded.site == state.site
        assert loaded.token("admintoken") == state.token("admintoken")
        assert loaded.contacts(course) == [teacher]
        assert loaded.add_user("carol") == state.add_user("carol")
        assert loaded.add_course("C4") == state.add_course("C4")
        assert loaded.snapshot() == state.snapshot()

    def test_installed_plugins_survive(self, tmp_path: Path) -> None:
        """A site with the companion plugin loads with it, and its token's service."""
        site = SiteConfig(plugins=(COMPANION_PLUGIN,))
        state = MoodleState(clock=lambda: NOW, site=site)
        state.add_token(TOKEN, 3, functions=COMPANION_SERVICE_FUNCTIONS)
        path = tmp_path / "site.json"

        state.save(path)
        loaded = MoodleState.load(path, clock=lambda: NOW)

        assert loaded.site == site
        assert loaded.token(TOKEN) == state.token(TOKEN)

    def test_file_is_private_and_replaced_whole(self, tmp_path: Path) -> None:
        """The file is 0600 even over a 0644 one, and no temporary file is left."""
        path = tmp_path / "site.json"
        path.write_text("old")
        path.chmod(0o644)
        MoodleState().save(path)
        assert path.stat().st_mode & 0o777 == 0o600
        assert list(tmp_path.iterdir()) == [path]

    def test_failed_save_keeps_the_old_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails before the rename leaves the previous save intact."""
        path = tmp_path / "site.json"
        state, _, _ = _site()
        state.save(path)
        before = path.read_bytes()
        state.add_user("late")

        def broken_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="No space"):
            state.save(path)
        assert path.read_bytes() == before
        assert list(tmp_path.iterdir()) == [path]

    @pytest.mark.parametrize(
        "text",
        ["not json", "[]", '{"format": "something-else", "version": 1}', "{}"],
    )
    def test_a_file_that_is_not_a_saved_site_is_refused(
        self, tmp_path: Path, text: str
    ) -> None:
        """Loading anything but a saved site raises StateFileError naming the file."""
        path = tmp_path / "site.json"
        path.write_text(text)
        with pytest.raises(StateFileError, match=r"site\.json"):
            MoodleState.load(path)


class TestStopStart:
    """stop() as a real site's web server stops; start() again on the same port."""

    async def test_in_flight_is_terminated_then_refused_then_served_again(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A cut request gets 'Terminated: 15' and is not applied; the port is closed
        until start(), which serves the same URL with the state intact."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            url = sim.url
            assert await _post(session, url, _enrol(ids[:1], course)) == (
                200,
                "application/json",
                None,
            )
            sim.faults.hang_next(1)
            cut = asyncio.create_task(_post(session, url, _enrol(ids[1:2], course)))
            await until(lambda: sim.in_flight == 1)

            await sim.stop()

            assert await cut == TERMINATED
            assert not sim.running
            with pytest.raises(aiohttp.ClientConnectorError):
                await _post(session, url, _enrol(ids[2:], course))
            await sim.start()
            assert sim.url == url
            assert [e.userid for e in state.enrolments(course)] == ids[:1]
            assert await _post(session, url, _enrol(ids[1:], course)) == (
                200,
                "application/json",
                None,
            )
            assert [e.userid for e in state.enrolments(course)] == ids

    async def test_queued_and_working_requests_are_all_cut(
        self, session: aiohttp.ClientSession
    ) -> None:
        """Requests inside Moodle's work and queued for a worker are all answered the
        page, none applied and none logged as calls."""
        state, ids, course = _site()
        slow = LatencyModel(per_call_s=3600.0, per_row_s=0.0, workers=1)
        async with MoodleSimulator(state, token=TOKEN, latency=slow) as sim:
            cut = [
                asyncio.create_task(_post(session, sim.url, _enrol([uid], course)))
                for uid in ids
            ]
            await until(lambda: sim.in_flight == len(ids))
            await sim.stop()
            assert await asyncio.gather(*cut) == [TERMINATED] * len(ids)
        assert state.enrolments(course) == []
        assert sim.calls == []

    async def test_stop_saves_the_state_file(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """With state_path, stop() writes the site there for another process to load."""
        path = tmp_path / "site.json"
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN, state_path=path) as sim:
            await _post(session, sim.url, _enrol(ids, course))
            assert not path.exists()
        assert path.stat().st_mode & 0o777 == 0o600
        saved = MoodleState.load(path)
        assert saved.snapshot() == state.snapshot()
        assert [e.userid for e in saved.enrolments(course)] == ids

    async def test_start_and_stop_are_idempotent(self) -> None:
        """A second start() or stop() changes nothing."""
        sim = MoodleSimulator(token=TOKEN)
        await sim.start()
        url = sim.url
        await sim.start()
        assert sim.url == url
        await sim.stop()
        await sim.stop()
        assert not sim.running


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _raw_post(port: int, pairs: list[tuple[str, str]]) -> Connection:
    """Send one request and return once it is written (the answer is read later)."""
    body = urlencode(pairs).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    return reader, writer


async def _read_answer(connection: Connection) -> tuple[int, str, str]:
    """Status, content type and body of a ``Connection: close`` answer."""
    reader, writer = connection
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    content_type = headers["Content-Type"].split(";")[0]
    return int(lines[0].split()[1]), content_type, body.decode()


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def _wait_listening(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not await _listening(port):
        assert process.returncode is None, "moodle-sim exited at start-up"
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"moodle-sim never listened on {port}")
        await asyncio.sleep(0.05)


class TestMoodleSimProcess:
    """``enrolstream moodle-sim --state FILE``: SIGTERM saves, a restart loads."""

    async def test_sigterm_then_restart_keeps_the_site(
        self, tmp_path: Path, session: aiohttp.ClientSession
    ) -> None:
        """Enrolments made before SIGTERM are there after a restart on the same port;
        the request in flight at SIGTERM is answered 'Terminated: 15' and not applied."""
        seed = tmp_path / "seed.json"
        seed.write_text(
            json.dumps(
                {
                    "users": [{"username": f"p{n}"} for n in range(3)],
                    "courses": [{"shortname": "C1", "fullname": "Course 1"}],
                }
            )
        )
        seeded = load_seed(seed)
        course = seeded.courses()[-1].id
        alice, bob, carol = (u.id for u in seeded.users()[-3:])
        port, path = free_port(), tmp_path / "site.json"
        # Real latency and two workers: a 400-row call is in Moodle's work for
        # ~3 s while a one-row probe on the other worker answers in ~40 ms.
        command = [
            *ENROLSTREAM,
            "moodle-sim",
            *("--port", str(port), "--token", TOKEN, "--state", str(path)),
            *("--state-from", str(seed), "--latency", "real", "--workers", "2"),
            *("--max-input-vars", "100000"),
        ]

        async def start() -> asyncio.subprocess.Process:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await _wait_listening(port, process)
            return process

        async def sigterm(process: asyncio.subprocess.Process) -> str:
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), timeout=30)
            assert process.returncode == 0, err.decode()
            return out.decode()

        url = f"http://127.0.0.1:{port}"
        process = await start()
        assert (await _post(session, url, _enrol([alice, bob], course)))[2] is None
        in_flight = await _raw_post(port, _enrol([carol] * 400, course))
        # Answered after the long call was written: the server has read it by then.
        assert (await _post(session, url, _enrol([alice], course)))[2] is None

        logged = await sigterm(process)

        assert await _read_answer(in_flight) == TERMINATED
        assert f"state saved to {path}" in logged
        assert not await _listening(port)
        assert path.stat().st_mode & 0o777 == 0o600
        saved = MoodleState.load(path)
        assert [e.userid for e in saved.enrolments(course)] == [alice, bob]

        process = await start()
        roster = [
            ("wstoken", TOKEN),
            ("wsfunction", "core_enrol_get_enrolled_users"),
            ("moodlewsrestformat", "json"),
            ("courseid", str(course)),
        ]
        _, _, users = await _post(session, url, roster)
        assert sorted(user["id"] for user in users) == [alice, bob]
        assert (await _post(session, url, _enrol([carol], course)))[2] is None
        await sigterm(process)
        assert [e.userid for e in MoodleState.load(path).enrolments(course)] == [
            alice,
            bob,
            carol,
        ]
