# Reading a host's files without failing on a missing one (facts, probe).
import os


def read(path, default=None):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return default


def listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def tail_lines(path, limit=4 << 20):
    """The lines of a file's last `limit` bytes (a line cut in two dropped); None: unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    lines = data.splitlines()
    return lines[1:] if size > limit else lines
