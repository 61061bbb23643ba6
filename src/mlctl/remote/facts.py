# Facts about one server in one round trip, printed as JSON. argv: DEPLOY_TO [ENV_PUBLIC_KEYS]
# Run as root: it also returns the shared .env's non-public values, which mlctl only adds to its
# mask (a failing step's output may show them) and never keeps in the facts.
import json
import os
import platform
import shutil
import sys
import sysconfig

root = sys.argv[1]
public = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else set()


def read(path, default=None):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return default


def metas():
    out = {}
    d = os.path.join(root, ".mlctl", "releases")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name.endswith(".json"):
            try:
                out[name[:-5]] = json.loads(read(os.path.join(d, name), "{}"))
            except ValueError:
                out[name[:-5]] = {"status": "unknown"}
    return out


def env_pairs():
    for line in (read(os.path.join(root, "shared", ".env"), "") or "").splitlines():
        key, eq, value = line.strip().removeprefix("export ").partition("=")
        key = key.strip()
        if eq and key and not key.startswith("#"):
            yield key, value.strip().strip("'\"")


def env_values():
    return [value for key, value in env_pairs() if key.upper() not in public]


def env_keys():
    """The names the shared .env sets to something (the preflight checks the settings' needs)."""
    return sorted({key for key, value in env_pairs() if value})


def glibc():
    # confstr answers at once; platform.libc_ver() reads the whole interpreter binary.
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
        return version if name == "glibc" else ""
    except (ValueError, OSError, AttributeError):
        return ""


def listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


current = (
    os.readlink(os.path.join(root, "current"))
    if os.path.islink(os.path.join(root, "current"))
    else None
)
usage = shutil.disk_usage(root if os.path.isdir(root) else "/")
print(
    json.dumps(
        {
            "python": "%d.%d" % sys.version_info[:2],
            "python_version": platform.python_version(),
            "machine": platform.machine(),
            "platform": sysconfig.get_platform(),
            "libc": glibc(),
            "free_bytes": usage.free,
            "exists": os.path.isdir(root),
            "marker": (read(os.path.join(root, ".mlctl", "marker"), "") or "").strip(),
            "current": os.path.basename(current) if current else None,
            "releases": listdir(os.path.join(root, "releases")),
            "metas": metas(),
            "venvs": [
                v
                for v in listdir(os.path.join(root, "venvs"))
                if os.path.exists(os.path.join(root, "venvs", v, ".complete"))
            ],
            "env_file": os.path.exists(os.path.join(root, "shared", ".env")),
            "lock": read(os.path.join(root, ".mlctl", "lock", "holder.json")),
            "lock_exists": os.path.isdir(os.path.join(root, ".mlctl", "lock")),
            "env_values": env_values(),
            "env_keys": env_keys(),
        }
    )
)
