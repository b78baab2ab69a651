"""structlog set-up, called once per process by the CLI.

Console rendering on a terminal, JSON lines otherwise (containers, cron, CI).
A processor masks anything that looks like a Moodle token or a password, as a
last line of defence: code never passes secrets to a log call in the first place.
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


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog (and the stdlib loggers of aiokafka/aiohttp) once."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
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
