"""Moodle's REST web services: the one package that speaks to Moodle.

``client`` (aiohttp, the one HTTP module), ``form`` (PHP's form encoding and the
``max_input_vars`` budget), ``batch`` (chunking and bisection of rejected
batches), ``actions`` (the domain's actions as web-service calls), ``reads``
(look-ups), ``rosters`` (what a course holds), ``errors`` (Moodle's answers as
typed errors).
"""
