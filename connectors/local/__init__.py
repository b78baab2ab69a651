"""This machine's disk: the poller's checkpoint store and files only the service may read."""
