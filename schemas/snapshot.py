"""Markers that bracket a snapshot on the snapshot topic (schema version 1).

A snapshot is the full enrolment state of some terms, consistent with one
change-tracking version: a ``begin`` marker, one ``EnrolmentEvent`` (kind
``snapshot``, carrying ``snapshot_id``) per person and term, then an ``end``
marker with the counts. Markers are keyed ``MARKER_KEY``; events by person, so
they spread over partitions. A reader knows a snapshot is complete when it has
seen its end marker and exactly ``end.events`` events with its id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import TermKey

MARKER_KEY = b"__enrolstream_snapshot_marker__"


class SnapshotMarker(BaseModel):
    """The begin or end of one snapshot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = Field(default=1, description="Marker format version.")
    marker: Literal["begin", "end"] = Field(description="Which end of the snapshot.")
    snapshot_id: str = Field(description="Unique id of this snapshot.")
    source: str = Field(description="The PowerCampus database it was read from.")
    state_version: int = Field(
        description="The change-tracking version the snapshot is consistent with."
    )
    terms: tuple[TermKey, ...] = Field(description="The terms it covers.")
    events: int | None = Field(
        default=None, description="End marker: how many snapshot events were published."
    )
    persons: int | None = Field(
        default=None, description="End marker: distinct persons."
    )
    registrations: int | None = Field(
        default=None, description="End marker: TRANSCRIPTDETAIL rows carried."
    )
    created_at: datetime = Field(description="When the marker was written.")
