"""structlog set-up, called once per process by the CLI.

Console rendering on a terminal, JSON lines otherwise (containers, cron, CI).
A processor masks anything that looks like a Moodle token or a password, as a
last line of defence: code never passes secrets to a log call in the first place.

aiokafka logs an ERROR for every bootstrap host it cannot connect to. Each such
failure reaches us as a typed error that we report ourselves (one line for a
one-shot command, ``broker_unreachable`` with the next delay while a long-running
one waits), so that record is shown only at debug level.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|password|passwd|pwd|secret)", re.IGNORECASE)
_TOKEN_IN_TEXT = re.compile(r"(wstoken=)[^&\s]+", re.IGNORECASE)


def mask_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace values of secret-named keys, and ``wstoken=…`` inside text, by stars."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key) and value:
            event_dict[key] = "**********"
        elif isinstance(value, str) and "wstoken=" in value.lower():
            event_dict[key] = _TOKEN_IN_TEXT.sub(r"\1**********", value)
    return event_dict


#: aiokafka's format string for a bootstrap host it could not connect to
#: (``aiokafka/client.py``, logger "aiokafka"); matched on the template, not on
#: rendered text.
_AIOKAFKA_BOOTSTRAP_FAILED = 'Unable connect to "%s:%s": %s'


class _BootstrapFailureAtDebug(logging.Filter):
    """Shows aiokafka's per-host bootstrap failure only when logging at debug level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that record unless the configured level is debug."""
        if record.msg == _AIOKAFKA_BOOTSTRAP_FAILED:
            return self.level <= logging.DEBUG
        return True


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog (and the stdlib loggers of aiokafka/aiohttp) once."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    kafka_client = logging.getLogger("aiokafka")
    for old in [
        f for f in kafka_client.filters if isinstance(f, _BootstrapFailureAtDebug)
    ]:
        kafka_client.removeFilter(old)
    kafka_client.addFilter(_BootstrapFailureAtDebug(numeric))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json" or not sys.stderr.isatty()
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # sys.stderr is looked up at each call, not bound once: a stream swapped in
        # and closed later (test runners, daemonisers) must not break logging.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
