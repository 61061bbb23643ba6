# Facts about one server in one round trip, printed as JSON. argv: DEPLOY_TO [ENV_PUBLIC_KEYS
# [UNIT UPSTREAM_FILE]]: with the last two (gunicorn-P, nginx's include) the app slots too.
# Run as root: it also returns the shared .env's non-public values, which mlctl only adds to its
# mask (a failing step's output may show them) and never keeps in the facts.
# remote/hostfiles.py and remote/envfile.py are sent in front.
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

if __package__:  # imported by mlctl; on a host these modules are sent in front
    from mlctl.remote.envfile import env_pairs, secret_values
    from mlctl.remote.hostfiles import listdir, read


def metas(root):
    out = {}
    d = os.path.join(root, ".mlctl", "releases")
    for name in listdir(d):
        if name.endswith(".json"):
            try:
                out[name[:-5]] = json.loads(read(os.path.join(d, name), "{}"))
            except ValueError:
                out[name[:-5]] = {"status": "unknown"}
    return out


def env_keys(text):
    """The names the shared .env sets to something (the preflight checks the settings' needs)."""
    return sorted({key for key, value in env_pairs(text) if value})


def glibc():
    # confstr answers at once; platform.libc_ver() reads the whole interpreter binary.
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
        return version if name == "glibc" else ""
    except (ValueError, OSError, AttributeError):
        return ""


def interpreter():
    return {
        "python": "%d.%d" % sys.version_info[:2],
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "platform": sysconfig.get_platform(),
        "libc": glibc(),
    }


def tree(root):
    """What lies under DEPLOY_TO: the marker, releases, their metadata and complete venvs."""
    current = os.path.join(root, "current")
    linked = os.readlink(current) if os.path.islink(current) else None
    venvs = os.path.join(root, "venvs")
    return {
        "marker": (read(os.path.join(root, ".mlctl", "marker"), "") or "").strip(),
        "current": os.path.basename(linked) if linked else None,
        "releases": listdir(os.path.join(root, "releases")),
        "metas": metas(root),
        "venvs": [v for v in listdir(venvs) if os.path.exists(os.path.join(venvs, v, ".complete"))],
    }


SLOTS = ("blue", "green")  # config/layout.py's SLOTS


def slots(root, unit, upstream):
    """The live slot (the one nginx's included upstream names), and per slot the release its link
    names and whether it runs; None on a host without two slots (set up by an earlier mlctl)."""
    text = read(upstream, None)
    if text is None:
        return None
    units = ["%s@%s.service" % (unit, s) for s in SLOTS]
    states = subprocess.run(
        ["systemctl", "is-active", *units], capture_output=True, text=True
    ).stdout.split()
    out = {"live": next((s for s in SLOTS if "/%s-%s.sock" % (unit, s) in text), None)}
    for slot, state in zip(SLOTS, states + ["unknown"] * len(SLOTS), strict=False):
        link = os.path.join(root, "slots", slot)
        target = os.readlink(link) if os.path.islink(link) else ""
        out[slot] = {"release": os.path.basename(target) or None, "active": state == "active"}
    return out


def facts(root, public):
    env = os.path.join(root, "shared", ".env")
    text = read(env, "") or ""
    usage = shutil.disk_usage(root if os.path.isdir(root) else "/")
    out = {**interpreter(), "free_bytes": usage.free, **tree(root)}
    out["env_file"] = os.path.exists(env)
    out["env_values"] = secret_values(text, public)
    out["env_keys"] = env_keys(text)
    return out


def main():
    public = sys.argv[2].split(",") if len(sys.argv) > 2 else ()
    out = facts(sys.argv[1], public)
    if len(sys.argv) > 4:
        out["slots"] = slots(sys.argv[1], sys.argv[3], sys.argv[4])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
