"""The Kafka adapter's own errors (the ones it does not translate into a side's).

::

    KafkaAdapterError
    ├── ProducerFailed          retriable: the broker could not be reached or did
    │                           not acknowledge every record (the publisher and the
    │                           sinks raise their side's error instead:
    │                           ``cdc.errors.PublishFailed``,
    │                           ``consumers.errors.BrokerUnavailable``)
    └── KafkaTlsError           TLS to Kafka cannot work: fix the settings
        ├── KafkaTlsUnusable    a CA, certificate or key file does not load
        └── KafkaTlsRefused     the broker's certificate, its name, or ours refused
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "KafkaAdapterError",
    "KafkaTlsError",
    "KafkaTlsRefused",
    "KafkaTlsUnusable",
    "ProducerFailed",
]


class KafkaAdapterError(Exception):
    """Root of the errors the Kafka adapter raises as its own."""

    retriable: ClassVar[bool] = False


class ProducerFailed(KafkaAdapterError):
    """The broker could not be reached or did not acknowledge every record."""

    retriable: ClassVar[bool] = True


class KafkaTlsError(KafkaAdapterError):
    """The TLS settings cannot be used; retrying does not help, a setting must change."""


class KafkaTlsUnusable(KafkaTlsError):
    """A CA file, certificate or key could not be loaded (names the setting and file)."""


class KafkaTlsRefused(KafkaTlsError):
    """A broker and we did not agree on TLS: its certificate, or ours, was refused."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"TLS to Kafka at {server} refused: {reason}")
        self.server = server
        self.reason = reason
