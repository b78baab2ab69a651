"""The ``enrolstream`` command: ``root`` (the entry point) and one module per group.

``context`` holds what the groups share (the settings on the command context, the
Kafka check); ``capture``, ``apply``, ``mapping``, ``reconcile``, ``replay`` drive
the product through ``enrolstream.wiring``; ``standins``, ``powercampus`` and
``moodle_sim`` drive the embedded stand-ins of ``sandbox``.
"""
