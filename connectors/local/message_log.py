"""The LMB message log: every message as received and its answer, one file per day.

What SHEBanG keeps as its daily ``message_log.YYYYMMDD`` and enrol_lmb in
``enrol_lmb_raw_xml``: here JSON lines, ``lmb-messages-YYYY-MM-DD.jsonl`` (UTC
date of the entry) in the configured directory, a ``received`` entry with the
body verbatim before the message is applied and an ``answered`` entry after.
The messages hold student data: files are 0600 and the directory we create
0700 (``connectors.local.files``). Appends run in a worker thread so the
endpoint's loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from connectors.local.files import FILE_MODE, make_private_directory

__all__ = ["DatedMessageLog"]


class DatedMessageLog:
    """Appends entries to the day's file under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, day: datetime) -> Path:
        """The file that holds ``day``'s entries."""
        return self.directory / f"lmb-messages-{day.astimezone(UTC).date()}.jsonl"

    async def append(self, entry: Mapping[str, object]) -> None:
        """Append one entry (a JSON line) to today's file."""
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        await asyncio.to_thread(self._append, self.path_for(datetime.now(UTC)), line)

    def _append(self, path: Path, line: str) -> None:
        make_private_directory(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            os.fchmod(descriptor, FILE_MODE)
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)
