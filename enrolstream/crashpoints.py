"""Named places where the randomized fault matrix may kill this process, as kill -9 would.

The poller and the consumer call ``crash_point(name)`` at the moments a crash is
most harmful (between Kafka's acknowledgement and the saved version; between
Moodle's answer and the ledger write; between the ledger write and the commit).
Unarmed (always, outside ``bench/chaos.py`` and its short version in the tests)
it is one dictionary look-up. Armed through ``ENROLSTREAM_CRASH_POINTS``, e.g.
``consumer.after_moodle=0.05,poller.after_publish=0.1``, each call ends the
process with SIGKILL with that probability: no ``finally``, no flush, no commit.

The only module besides ``enrolstream.settings`` that reads the environment: the
variable is a test harness's switch, not a setting a deployment would make.
"""

from __future__ import annotations

import os
import random
import signal

__all__ = ["CRASH_POINTS", "ENVIRONMENT_VARIABLE", "arm", "crash_point"]

ENVIRONMENT_VARIABLE = "ENROLSTREAM_CRASH_POINTS"

#: Every crash point the code has, and where it is.
CRASH_POINTS: dict[str, str] = {
    "poller.after_publish": "events acknowledged by Kafka, version not saved yet",
    "consumer.after_intent": "intents recorded in the ledger, Moodle not called yet",
    "consumer.after_moodle": "Moodle answered, the outcome not in the ledger yet",
    "consumer.after_ledger": "outcomes in the ledger, offsets not committed yet",
    "conduit.after_upload": "a window's files renamed on the SFTP server, the window "
    "not marked delivered yet",
    "conduit.after_delivered": "windows marked delivered, their offsets not committed",
}

_armed: dict[str, float] = {}


def arm(spec: str) -> dict[str, float]:
    """Arm the points of ``name=probability,...``; unknown names raise ``ValueError``."""
    armed: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, chance = part.partition("=")
        if name not in CRASH_POINTS:
            raise ValueError(
                f"unknown crash point {name!r}; known: {sorted(CRASH_POINTS)}"
            )
        armed[name] = float(chance or "1")
    _armed.clear()
    _armed.update(armed)
    return armed


def crash_point(name: str) -> None:
    """SIGKILL this process here, with the armed probability (never when unarmed)."""
    chance = _armed.get(name)
    if chance and random.random() < chance:  # noqa: S311 - fault injection, not crypto
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get(ENVIRONMENT_VARIABLE, ""))
