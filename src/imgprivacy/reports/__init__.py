"""Tables and figures of the reproductions (matplotlib with the Agg backend, no screen needed)."""
