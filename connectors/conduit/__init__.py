"""Open LMS Conduit: the consumer's decisions as rows of Conduit's enrolment and user files."""
