"""The dead-letter record: an event or a Moodle row that could not be applied, and why.

Written to the dead-letter topic keyed like the original event (the person), so
``enrolstream dlq list`` can show it and ``enrolstream dlq redrive`` can re-queue
the original bytes once the cause is fixed. Nothing is dropped: the original
value is kept verbatim.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DeadLetter(BaseModel):
    """One record on the dead-letter topic (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(default=1, description="Record format version.")
    reason: str = Field(description="What went wrong, for a person to read.")
    error_type: str = Field(description="The typed error's class name.")
    errorcode: str | None = Field(
        default=None, description="Moodle's errorcode, if any."
    )
    source_topic: str = Field(description="Where the original event was read.")
    source_partition: int = Field(description="Its partition.")
    source_offset: int = Field(description="Its offset.")
    key: str | None = Field(default=None, description="The original key (the person).")
    value: str | None = Field(default=None, description="The original value, verbatim.")
    event_id: str | None = Field(
        default=None, description="The event id, when it parsed."
    )
    action: dict[str, Any] | None = Field(
        default=None, description="The Moodle action that was rejected, if any."
    )
    dead_lettered_at: datetime = Field(description="When it was dead-lettered.")
