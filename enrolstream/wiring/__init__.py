"""The composition root: the only place that builds adapters from the settings.

The domain packages (``cdc``, ``consumers``) speak through ports; the adapters
(``connectors``) implement them; this package reads ``Settings`` and connects the
two, one module per job the command line offers:

* ``common``: what several jobs build the same way (Kafka options and topics,
  the Moodle client and its start-up question, the decision policy);
* ``capture``: ``poll``, ``snapshot``, ``source check``;
* ``apply``: ``consume`` and the dead-letter commands;
* ``reconcile``: ``reconcile`` and ``ledger adopt``;
* ``replay``: ``replay``.

The command line (``enrolstream.cli``) parses options and calls one ``run_*``
function here; the demo and the benchmarks use the same functions.
"""
