"""The `ocinest` command."""
