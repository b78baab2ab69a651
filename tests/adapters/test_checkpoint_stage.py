"""The local store's staging: one transaction per stage, whole or not at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import cast

import pytest

from cdc.ports import ShadowEntry
from connectors.local.checkpoint import SqliteCheckpointStore
from schemas.events import SectionKey

BSC = SectionKey(
    academic_year="2021",
    academic_term="Winter",
    academic_session="01",
    event_id="BSC5102",
    event_sub_type="LEC",
    section="01",
)


def test_a_stage_that_fails_part_way_stages_nothing(tmp_path: Path) -> None:
    """Rows before a bad one are not left staged (one transaction, not one per row)."""
    good = [ShadowEntry(n, f"P{n:09d}", BSC) for n in range(1, 4)]
    bad = ShadowEntry(4, cast("str", None), BSC)  # NOT NULL people_code_id
    with SqliteCheckpointStore(tmp_path / "state.sqlite", "pc") as store:
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            store.stage([*good, bad])
        assert store.lookup([1, 2, 3, 4]) == {}
        store.stage(good)
        assert set(store.lookup([1, 2, 3, 4])) == {1, 2, 3}
