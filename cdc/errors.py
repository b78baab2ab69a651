"""Errors of the capture side. Whether a retry can help is a property of the type.

    CdcError
    ├── SourceError
    │   ├── SourceUnavailable          retriable: network, login timeout, deadlock, failover
    │   ├── ChangeTrackingVersionTooOld  not retriable as such: re-initialise
    │   └── SourceMisconfigured        not retriable: a DBA or the settings must change
    ├── PublishFailed                  retriable: the broker did not acknowledge
    └── LeaseLost                      not retriable: another poller is active; stand by

The poller branches on ``retriable``, never on message text.
"""

from __future__ import annotations

from typing import ClassVar


class CdcError(Exception):
    """Root of the capture side's errors."""

    retriable: ClassVar[bool] = False


class SourceError(CdcError):
    """The PowerCampus database could not answer as needed."""


class SourceUnavailable(SourceError):
    """The database is unreachable or refused the query for a passing reason."""

    retriable: ClassVar[bool] = True


class ChangeTrackingVersionTooOld(SourceError):
    """The saved version is below the min valid version: changes were lost, re-initialise."""

    def __init__(self, last_version: int, min_valid_version: int) -> None:
        super().__init__(
            f"saved change-tracking version {last_version} is below the min valid "
            f"version {min_valid_version}: changes in between were cleaned up "
            "(outage longer than retention, truncated table, CT re-enabled)"
        )
        self.last_version = last_version
        self.min_valid_version = min_valid_version


class SourceMisconfigured(SourceError):
    """The database or the settings need a change by a person; the message says which."""


class PublishFailed(CdcError):
    """Kafka did not acknowledge every event of a batch."""

    retriable: ClassVar[bool] = True


class LeaseLost(CdcError):
    """This poller no longer holds the lease: another one may be active.

    Not retriable by the poller: it stops writing at once and goes back to
    standing by (``enrolstream/wiring/capture.py``).
    """
