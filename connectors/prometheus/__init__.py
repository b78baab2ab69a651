"""Prometheus: the ``Metrics`` port as prometheus-client metrics, and batch textfiles.

The only package that imports ``prometheus_client``.

* ``metrics``: ``PrometheusMetrics``, the long-running processes' metrics (``poll``,
  ``consume``, the demo), exposed by ``connectors.web`` on ``/metrics``;
* ``batch``: the one-shot commands' results (``snapshot``, ``reconcile``,
  ``replay``) written as a node-exporter textfile.

Every name starts ``enrolstream_``, counters end ``_total``, times are seconds;
labels are closed vocabularies (function, outcome, action, reason code,
partition), never a person or a course. ``docs/operations.md`` lists them.
"""

from connectors.prometheus.batch import BatchMetrics
from connectors.prometheus.metrics import PrometheusMetrics

__all__ = ["BatchMetrics", "PrometheusMetrics"]
