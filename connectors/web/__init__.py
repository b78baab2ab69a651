"""The operations web server (aiohttp): ``/metrics``, ``/livez``, ``/readyz``, the status page.

* ``server``: ``OpsServer``, one listener per process; health and metrics need no
  credentials (probes and scrapers), the status page and its actions do;
* ``guard``: authentication (a bearer token or basic-auth credentials), the
  cross-site request check of every action, the reprocess rate limit;
* ``page`` and ``chart``: the status page, server-rendered, self-contained (no
  script, no asset from anywhere: its CSS is inline and its chart an inline SVG).

What the page shows and what its buttons do come through ``StatusBackend``
(``enrolstream.wiring.status`` implements it); this package knows no Kafka,
no Moodle and no database.
"""

from connectors.web.page import PageView
from connectors.web.server import (
    OpsServer,
    PortUnavailable,
    StatusBackend,
    WebRefused,
)

__all__ = ["OpsServer", "PageView", "PortUnavailable", "StatusBackend", "WebRefused"]
