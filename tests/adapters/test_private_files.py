"""Student data on disk: the poller's state and the reconcile report are 0600 in 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.ports import ShadowEntry
from connectors.local.checkpoint import SqliteCheckpointStore
from connectors.local.files import (
    make_private_directory,
    open_private,
    prepare_private_file,
)
from schemas.events import SectionKey


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(name="umask", params=[0o022, 0o000], ids=["umask022", "umask000"])
def _umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The usual umask, and a lax one that must not loosen anything."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


ENTRY = ShadowEntry(
    transcript_detail_id=1,
    people_code_id="P000000001",
    section=SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="01",
        event_id="BSC5102",
        event_sub_type="LEC",
        section="01",
    ),
)


class TestPrivateFiles:
    """The helpers create 0600 files and 0700 directories whatever the umask."""

    def test_missing_directories_are_0700(self, tmp_path: Path, umask: int) -> None:
        """Every directory created on the way is 0700; an existing parent is untouched."""
        tmp_path.chmod(0o755)
        make_private_directory(tmp_path / "var" / "reports" / "2025-01-01")
        assert mode(tmp_path) == 0o755
        for directory in ("var", "var/reports", "var/reports/2025-01-01"):
            assert mode(tmp_path / directory) == 0o700, directory

    def test_written_file_is_0600(self, tmp_path: Path, umask: int) -> None:
        """A new file is 0600; an older 0644 one is tightened when rewritten."""
        fresh = tmp_path / "fresh.csv"
        with open_private(fresh) as handle:
            handle.write("a\n")
        older = tmp_path / "older.csv"
        older.write_text("old\n")
        older.chmod(0o644)
        with open_private(older) as handle:
            handle.write("new\n")
        assert (mode(fresh), mode(older)) == (0o600, 0o600)
        assert older.read_text() == "new\n"

    def test_prepared_file_keeps_its_content(self, tmp_path: Path) -> None:
        """Preparing existing files for a library tightens them and changes nothing else."""
        path = tmp_path / "state.sqlite"
        wal = tmp_path / "state.sqlite-wal"
        for file in (path, wal):
            file.write_bytes(b"data")
            file.chmod(0o644)
        prepare_private_file(path, ("-wal", "-shm"))
        assert (mode(path), path.read_bytes()) == (0o600, b"data")
        assert (mode(wal), wal.read_bytes()) == (0o600, b"data")
        assert not (tmp_path / "state.sqlite-shm").exists()


class TestCheckpointStore:
    """The poller's state file (the shadow map: who takes what) is private."""

    def test_new_state_file_and_side_files(self, tmp_path: Path, umask: int) -> None:
        """The database, its -wal and -shm files are 0600; its new directory 0700."""
        path = tmp_path / "var" / "poller-state.sqlite"
        with SqliteCheckpointStore(path, "pc") as store:
            store.commit(7, [ENTRY], [])
            files = [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))]
            assert all(file.exists() for file in files)
            assert {file.name: mode(file) for file in files} == {
                file.name: 0o600 for file in files
            }
        assert mode(path.parent) == 0o700

    def test_older_loose_state_is_tightened(self, tmp_path: Path) -> None:
        """A state file left 0644 by an older version is 0600 once opened, data intact."""
        path = tmp_path / "poller-state.sqlite"
        with SqliteCheckpointStore(path, "pc") as store:
            store.commit(7, [ENTRY], [])
        path.chmod(0o644)
        with SqliteCheckpointStore(path, "pc") as store:
            assert store.load_version() == 7
            assert mode(path) == 0o600
