"""The consumer side's Kafka adapter: the only package of ``consumers/`` that imports aiokafka.

- ``stream``: the event consumer (manual per-partition commits, rewind), table
  topics read as tables (ledger, parked), acknowledged record sinks, ``read_topic``.
- ``groups``: consumer-group administration for replay (live members, committed
  offsets, offsets for a time, moving a group's offsets).

The runner and the other modules see ``RawMessage`` values and
``(topic, partition)`` tuples, never aiokafka types.
"""

from connectors.kafka.mappings import KafkaMappingFeed
from connectors.kafka.stream import (
    KafkaEventConsumer,
    KafkaRecordSink,
    KafkaTable,
    read_topic,
)
from consumers.ports import Partition, RawMessage

__all__ = [
    "KafkaEventConsumer",
    "KafkaMappingFeed",
    "KafkaRecordSink",
    "KafkaTable",
    "Partition",
    "RawMessage",
    "read_topic",
]
