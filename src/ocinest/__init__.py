"""ocinest: an OCI registry and client toolkit with nested-artifact indexes."""

__version__ = "0.1.0"
