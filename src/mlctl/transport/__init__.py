"""Connections, sessions, the journal and the deploy lock."""
