"""The simulator stopped and started like a real site: its state on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.moodle_sim.persist import StateFileError
from sandbox.moodle_sim.site import SiteConfig
from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState

TOKEN = "9" * 32
NOW = 1_760_000_000.0


def _site(users: int = 3) -> tuple[MoodleState, list[int], int]:
    state = MoodleState()
    ids = [state.add_user(f"p{n}") for n in range(users)]
    return state, ids, state.add_course("C1", "Course 1")


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
