"""The revisions of the service schema, oldest first (``0001`` is the baseline)."""
