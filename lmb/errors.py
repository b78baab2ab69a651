"""Errors of the LMB source. Whether a retry can help is a property of the type.

    LmbError
    ├── MessageRejected         not retriable: the message is dead-lettered, LMB is answered 200
    │   ├── MalformedMessage    not XML, or not IMS Enterprise (no person, group or membership)
    │   └── HostileMessage      declares or refers to entities (defusedxml refused it)
    ├── StateUnavailable        retriable: the source's state could not be read from Kafka
    ├── PublishFailed           retriable: Kafka did not acknowledge (LMB: 503, it retries)
    ├── EndpointRefused         not retriable: the endpoint cannot start as configured
    └── SnapshotRefused         not retriable: the state topic is missing, empty or unreadable

The endpoint branches on ``retriable``, never on message text.
"""

from __future__ import annotations

from typing import ClassVar


class LmbError(Exception):
    """Root of the LMB source's errors."""

    retriable: ClassVar[bool] = False


class MessageRejected(LmbError):
    """The message can never be applied as it is: dead-letter it with this reason."""


class MalformedMessage(MessageRejected):
    """Not well-formed XML, or no IMS Enterprise object in it."""


class HostileMessage(MessageRejected):
    """The XML declares entities or refers to external ones: refused unparsed."""


class StateUnavailable(LmbError):
    """The memberships the source keeps could not be read from Kafka."""

    retriable: ClassVar[bool] = True


class PublishFailed(LmbError):
    """Kafka did not acknowledge every record: nothing counts as applied."""

    retriable: ClassVar[bool] = True


class EndpointRefused(LmbError):
    """The endpoint cannot start as configured; the message names the setting."""


class SnapshotRefused(LmbError):
    """The state topic cannot make a whole snapshot (missing, empty, a record unreadable)."""
