"""imgprivacy: protect the people in shared images."""

__version__ = "0.1.0"
