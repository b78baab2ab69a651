"""A term's published mapping: the record ``enrolstream mapping publish`` puts on Kafka.

One record per publication on a compacted topic (``enrolstream.mappings``), keyed
by the term (as PowerCampus's collation compares it): the latest is the term's
live mapping, which every running consumer follows without a restart. The
document is the mapping file's text as it was validated and published; a
consumer validates it again before using it and keeps the mapping it has when
it cannot. ``digest`` names this revision: full-state events published because
of it carry ``snapshot_id = "mapping:<term>:<digest>"``, and a consumer reads
the topic before deciding them when it does not hold that revision yet.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.collation import collate

__all__ = [
    "MAPPING_EVENT_PREFIX",
    "PublishedMapping",
    "digest_of",
    "mapping_snapshot_id",
]

#: The ``snapshot_id`` prefix of the events a publication republishes.
MAPPING_EVENT_PREFIX = "mapping:"


def digest_of(document: str) -> str:
    """The revision name of a mapping document (its SHA-256, 16 hex digits)."""
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def mapping_snapshot_id(term: str, digest: str) -> str:
    """The ``snapshot_id`` of events republished for a term's new mapping."""
    return f"{MAPPING_EVENT_PREFIX}{term}:{digest}"


class PublishedMapping(BaseModel):
    """One term's mapping as published (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    term: str = Field(description="The term, YEAR/TERM.")
    file: str = Field(description="The file it was published from (named in errors).")
    document: str = Field(description="The mapping file's JSON text.")
    digest: str = Field(description="The document's revision name (``digest_of``).")
    published_at: datetime = Field(description="When it was published (UTC).")

    def key(self) -> bytes:
        """The topic key: the term as PowerCampus's collation compares it."""
        return collate(self.term).encode()
