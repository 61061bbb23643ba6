"""Quoting, errors, console output and signals: what every layer uses."""
