"""Adapters to the external systems, one package each, behind the domain's ports.

``moodle`` (the web-service client: aiohttp), ``kafka`` (aiokafka: producers,
the event consumer, table topics, group administration), ``sqlserver`` (pyodbc:
the change-tracking source) and ``local`` (files on this machine: the poller's
checkpoint, private files). Each imports its driver and nobody else does; they
depend on the domain packages (``cdc``, ``consumers``, ``schemas``), never on
each other or on ``enrolstream``, which builds them from the settings.
"""
