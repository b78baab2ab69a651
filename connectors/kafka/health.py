"""Is the Kafka cluster answering? The readiness probe's question, asked afresh each time.

A short-lived client bootstraps (connects and reads the cluster's metadata) and is
closed again, whatever happened. A broker that accepts connections but never
answers (frozen, overloaded) is caught by the caller's time limit, which cancels
the bootstrap; the client is closed all the same.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from connectors.kafka.producer import describe_kafka_failure
from consumers.errors import BrokerUnavailable

__all__ = ["check_broker"]

_CLIENT_OPTIONS = frozenset(inspect.signature(AIOKafkaClient.__init__).parameters)


async def check_broker(options: dict[str, Any]) -> None:
    """Return once the cluster answered a metadata request; ``BrokerUnavailable`` if not."""
    client = AIOKafkaClient(
        **{key: value for key, value in options.items() if key in _CLIENT_OPTIONS}
    )
    try:
        await client.bootstrap()
    except KafkaError as exc:
        reason = describe_kafka_failure(exc, options.get("bootstrap_servers"))
        raise BrokerUnavailable(reason) from exc
    finally:
        await client.close()
