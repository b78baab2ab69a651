"""A term's courses: the mapping generated from PowerCampus, and Moodle course shells.

``catalog`` (what PowerCampus offers in a term, and the port that reads it),
``naming`` (templates), ``proposal`` (pure: which sections share a Moodle
course), ``document`` (pure: Moodle's matches, the mapping file, the difference
from the current one), ``shells`` (pure: the course shells to create and when to
show them), ``generate`` (the command's steps over the ports).
"""
