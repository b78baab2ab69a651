"""Several processes may open the poller's state file at once (a poller, its standby, `status`)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from connectors.local.checkpoint import SqliteCheckpointStore

OPENERS = 3
ROUNDS = 30

OLD_SHAPE = """
CREATE TABLE checkpoint (
    source TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    saved_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO checkpoint (source, version) VALUES ('pc', 42);
"""


def open_together(path: Path) -> list[BaseException]:
    """OPENERS stores opened on ``path`` at the same moment; what they raised."""
    start = threading.Barrier(OPENERS)
    raised: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            SqliteCheckpointStore(path, "pc").close()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            raised.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return raised


@pytest.mark.parametrize("shape", ["new file", "file of the old shape"])
def test_openers_at_the_same_moment_all_succeed(tmp_path: Path, shape: str) -> None:
    """Before: ~1 in 5 rounds failed ("duplicate column name", "database is locked")."""
    for round_ in range(ROUNDS):
        path = tmp_path / f"state-{round_}.sqlite"
        if shape != "new file":
            with sqlite3.connect(path) as old:
                old.executescript(OLD_SHAPE)
            old.close()
        assert open_together(path) == []
        with SqliteCheckpointStore(path, "pc") as store:
            expected = None if shape == "new file" else 42
            assert store.load_version() == expected
