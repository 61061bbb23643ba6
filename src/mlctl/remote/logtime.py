# The one parser of log-line times: `logs` merges hosts' lines by it, and the probe program counts
# a window of nginx lines with it on the host. Epoch seconds, or None for a line without a time.
import calendar
import re
import time

MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
# journalctl -o short-iso, and most ISO stamps
ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,]\d+)?(Z|[+-]\d{2}:?\d{2})?"
)
# gunicorn's own lines
BRACKET_ISO = re.compile(r"^\[(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
# nginx's combined format: the time, then (when the line has them) the request and its status
ACCESS = re.compile(
    r"\[(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{2}:?\d{2})\]"
    r'(?: "(?:[^"\\]|\\.)*" (\d{3}) )?'
)
ERROR = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) (?:\[(\w+)\])?")


def offset(text):
    """Seconds east of UTC of "+0100", "-05:00" or "Z"."""
    if not text or text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def stamped(parts, zone):
    """Epoch of (Y, M, D, h, m, s) at `zone`; None: the host's local time."""
    if zone is None:
        return time.mktime((*parts, 0, 0, -1))
    return calendar.timegm(tuple(parts)) - offset(zone)


def access_time(line):
    """(time, status) of an nginx access line (combined format); (None, None) otherwise."""
    m = ACCESS.search(line)
    if not m or m.group(2) not in MONTHS:
        return None, None
    d, mon, y, hh, mm, ss, zone, status = m.groups()
    t = stamped((int(y), MONTHS[mon], int(d), int(hh), int(mm), int(ss)), zone)
    return t, int(status) if status else None


def error_time(line):
    """(time, level) of an nginx error line; nginx writes it in the host's local time."""
    m = ERROR.match(line)
    if not m:
        return None, None
    return stamped([int(x) for x in m.groups()[:6]], None), m.group(7)


def line_time(line):
    """Epoch seconds of a journal (short-iso), gunicorn, nginx access or nginx error line."""
    for pattern in (ISO, BRACKET_ISO):
        m = pattern.match(line)
        if m:
            return stamped([int(x) for x in m.groups()[:6]], m.group(7))
    t = access_time(line)[0]
    return t if t is not None else error_time(line)[0]
