"""Operations, pure: what operators are told about the pipeline and when they are alarmed.

A sub-domain beside capture (``cdc``) and apply (``consumers``), above the contract:

* ``metrics``: the ``Metrics`` port both sides report to (``NO_METRICS`` by
  default; ``connectors.prometheus`` implements it);
* ``alarm``: the staleness alarm's rules (business hours, quiet source, consumer
  lag, dead letters waiting) and its raise / repeat / recover book, pure;
* ``watch``: the loop that observes, steps the book and hands notices to
  ``Notifier`` ports (``connectors.notify``: e-mail and webhook);
* ``health``: liveness (a heartbeat) and readiness (named probes) for ``/livez``
  and ``/readyz``;
* ``latency``: the last hour's commit → Moodle latencies, per minute;
* ``status``: the pipeline at a glance (the status page's block, ``enrolstream
  status``), as data, text and JSON.

No I/O here but through ports; time comes in as arguments or an injected clock.
"""
