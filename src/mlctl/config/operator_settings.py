"""The rules of the operator settings: `guards.read_only_commands`, `maintenance.allow` and
`notify` (their schema entries are in schema.py; validation.py calls these on each list item)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# Django's own management commands that only read: a protected environment runs them without
# the typed confirmation. A project adds its own with guards.read_only_commands.
READ_ONLY_COMMANDS = (
    "check",
    "showmigrations",
    "diffsettings",
    "sqlmigrate",
    "sqlsequencereset",
    "inspectdb",
    "findstatic",
    "help",
    "version",
)

NOTIFY_EVENTS = ("deploy", "rollback", "failure")
NOTIFY_KEYS = ("webhook", "on")


def address_problem(item) -> str:
    """Why a maintenance.allow entry is not an address or network nginx accepts ('' if it is)."""
    if not isinstance(item, str):
        return f"expected an address or network like 10.0.0.0/8, got {item!r}"
    try:
        ipaddress.ip_network(item, strict=False)
    except ValueError:
        return f"{item!r} is not an address or network (e.g. 10.0.0.0/8 or 192.0.2.7)"
    return ""


def notify_problem(item) -> str:
    """Why a notify entry is not {webhook: http(s) URL, on: [deploy|rollback|failure, ...]}."""
    if not isinstance(item, dict):
        return "expected {webhook: URL, on: [deploy, rollback, failure]}"
    unknown = sorted(set(item) - set(NOTIFY_KEYS))
    if unknown:
        return f"unknown key {unknown[0]!r} (known: {', '.join(NOTIFY_KEYS)})"
    url = item.get("webhook")
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook: expected an http:// or https:// URL"
    on = item.get("on", list(NOTIFY_EVENTS))
    if not isinstance(on, list) or not on or not all(e in NOTIFY_EVENTS for e in on):
        return f"on: expected a list of {', '.join(NOTIFY_EVENTS)}"
    return ""


def notify_events(item: dict) -> tuple[str, ...]:
    """The events a (valid) notify entry asks for; all of them when `on` is left out."""
    return tuple(item.get("on") or NOTIFY_EVENTS)
