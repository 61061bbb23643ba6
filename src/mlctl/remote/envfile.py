# The one reader of a shared .env: the facts and probe programs on hosts, and mlctl itself
# (setup reads a host's .env through it). commands/db.load_env exports a .env in a shell by the
# same rules; tests/unit/test_envfile.py holds both to one table of cases.
#
# Rules:
# - one KEY=VALUE per line; blank lines and lines starting with `#` are skipped;
# - an optional `export ` prefix; blanks around the key and around the value are dropped;
# - KEY is a shell name ([A-Za-z_][A-Za-z0-9_]*); any other line is skipped;
# - the value is everything after the FIRST `=` (an `=` inside a value stays);
# - one pair of matching quotes around the whole value is removed ('x' or "x"); nothing else is
#   interpreted: no $VAR, no escapes, no inline comment (a `#` inside a password stays);
# - `KEY=` sets KEY to the empty string.
import re

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
BLANKS = " \t\r\n\f\v"

# Names, users and paths in the shared .env are not secret; every other value is treated as one.
PUBLIC = (
    "DEBUG",
    "ALLOWED_HOSTS",
    "MEDIA_ROOT",
    "STATIC_ROOT",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "TIME_ZONE",
    "LOG_LEVEL",
)


def parse_line(line):
    """(key, value) of one line, or None for a comment, a blank or a line that sets nothing."""
    text = line.strip(BLANKS)
    if text.startswith("export "):
        text = text[len("export ") :].lstrip(BLANKS)
    key, eq, value = text.partition("=")
    key, value = key.rstrip(BLANKS), value.strip(BLANKS)
    if not eq or not NAME.match(key):
        return None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key, value


def env_pairs(text):
    """Every (key, value) the text sets, in order (a later line for the same key wins in a dict)."""
    return [pair for pair in map(parse_line, (text or "").splitlines()) if pair]


def is_public(key, public=PUBLIC):
    # Names, users and paths (PGUSER, MEDIA_ROOT) are not secret; masking them would hide the
    # project name everywhere. Anything credential-like is.
    return key.upper() in set(public)


def secret_values(text, public=PUBLIC, shortest=1):
    """The non-public values, longest first (a mask replaces a longer secret before its parts)."""
    values = {v for k, v in env_pairs(text) if len(v) >= shortest and not is_public(k, public)}
    return sorted(values, key=lambda v: (-len(v), v))
