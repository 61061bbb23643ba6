"""Reliability and security battery (issue 6): faults, bad input, concurrency, attacks."""
