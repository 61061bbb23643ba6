"""Python programs run on hosts with `python3 -c` (fixed source text, arguments quoted).

A host has no mlctl to import, so a program that uses another module of this folder is sent as
one text: the modules it needs first, then itself (`NEEDS`). Each such module imports its
neighbours only when mlctl imports it (`if __package__:`), which is how the laptop side and the
unit tests reuse the very same code; on a host the names are already defined above it.
Every module here is stdlib-only and runs on the hosts' Python (3.11 and later).
"""

from importlib.resources import files

# program -> the modules sent in front of it, in order
NEEDS = {
    "facts": ("hostfiles", "envfile"),
    "build": ("migplan",),
    "migrations": ("migplan",),
    "django_probe": ("migplan",),
    "probe": (
        "hostfiles",
        "envfile",
        "logtime",
        "probe_base",
        "probe_system",
        "probe_app",
        "probe_tls",
    ),
}


def text(name: str) -> str:
    """One module's own source."""
    return files(__package__).joinpath(f"{name}.py").read_text()


def source(name: str, prelude: str = "") -> str:
    """The program `name`, with the modules it needs, ready for `python3 -c`; `prelude` goes
    right before the program's own text (after the modules it may fill in)."""
    parts = [text(part) for part in NEEDS.get(name, ())]
    return "\n\n".join([*parts, *([prelude] if prelude else []), text(name)])
