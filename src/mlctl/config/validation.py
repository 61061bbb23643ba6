"""The one validation of the configuration: the inventory file's shape as it is read (`validate`),
then every environment's resolved settings, wherever a value came from (`check_settings`: the
file, an MLCTL_* variable or a --set flag), each error naming that origin.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from mlctl.config import pyversion, schema
from mlctl.config.schema import TOP, Field
from mlctl.core.errors import InventoryError

ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# What goes into systemd unit names, the nginx site and user names on servers.
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")
SERVER_DEPLOY_TO = re.compile(r"^/[A-Za-z0-9._/-]+$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9._* -]{1,200}$")
MIN_LEASE = 2.0  # the holder refreshes its heartbeat every lease/4 seconds


# ---------------------------------------------------------------- the file's shape


def validate(inv) -> None:
    """The file's shape: known keys of the right types, the required ones, environment names
    and host lists; the values every environment resolves to are checked by check_settings()."""
    data = inv.data
    _check_mapping(inv, data, TOP, ())  # also refuses a top level that is not a mapping
    for key in ("project", "environments"):
        if key not in data:
            raise InventoryError(f"{inv.path.name}:1: {key}: missing (required)")
    for key in schema.REQUIRED_PROJECT:
        if not data["project"].get(key):
            raise InventoryError(f"{inv.where(('project', key))}: missing value (required)")
    if not WSGI.match(data["project"]["wsgi"]):
        # gunicorn takes it as a positional word: a leading '-' would be read as an option
        raise InventoryError(
            f"{inv.where(('project', 'wsgi'))}: expected module.path:callable, "
            f"got {data['project']['wsgi']!r}"
        )
    if not data["environments"]:
        raise InventoryError(f"{inv.where(('environments',))}: no environment defined")
    if not pyversion.valid(data["project"].get("requires_python") or ""):
        raise InventoryError(
            f"{inv.where(('project', 'requires_python'))}: "
            f"{data['project']['requires_python']!r} is not a version constraint (e.g. '>=3.12')"
        )
    for name, env in data["environments"].items():
        _check_environment(inv, name, env)


def _check_environment(inv, name: str, env: dict) -> None:
    kp = ("environments", name)
    if not ENV_NAME.match(str(name)):
        raise InventoryError(f"{inv.where(kp)}: invalid name (use a-z, 0-9, - and _)")
    merged = {**(inv.data.get("defaults") or {}), **(env or {})}  # connection and hosts: top level
    if merged.get("connection", "ssh") == "ssh" and not merged.get("hosts"):
        raise InventoryError(f"{inv.where(kp + ('hosts',))}: missing value (no hosts for {name})")
    seen: dict[str, int] = {}
    for i, host in enumerate((env or {}).get("hosts") or []):
        _check_host(inv, kp + ("hosts", i), host)
        if host in seen:
            raise InventoryError(f"{inv.where(kp + ('hosts', i))}: duplicate host {host!r}")
        seen[host] = i


WSGI = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(?::[A-Za-z_][A-Za-z0-9_]*)?$")
HOST = re.compile(r"^(?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$")


def _check_host(inv, kp: tuple, host) -> None:
    if not isinstance(host, str) or not HOST.match(host):
        raise InventoryError(
            f"{inv.where(kp)}: invalid host {host!r} (expected an ssh alias or user@host:port)"
        )


def unsafe_deploy_to(path: str, local: bool) -> str:
    """Why a deploy_to would be dangerous to manage, or '' when it is fine."""
    if not path.strip():
        return "must not be empty"
    if "~" in path or "$" in path or "`" in path or "\n" in path:
        return "must be a plain path (no ~, $, ` or newline)"
    if any(part == ".." for part in Path(path).parts):
        return "must not contain '..'"
    if not local and not path.startswith("/"):
        return "must be an absolute path on the server"
    if Path(path).resolve() in (Path("/"),) or path.rstrip("/") in (
        "",
        "/usr",
        "/etc",
        "/var",
        "/home",
        "/root",
        "/srv",
        "/opt",
        "/tmp",
        "/bin",
        "/boot",
    ):
        return f"refusing to manage {path!r} (too broad: use a directory of its own)"
    return ""


def _check_mapping(inv, data, spec: dict, kp: tuple) -> None:
    if not isinstance(data, dict):
        raise InventoryError(f"{inv.where(kp)}: expected a mapping, got {_typename(data)}")
    for key, value in data.items():
        if key not in spec:
            known = ", ".join(sorted(spec))
            raise InventoryError(f"{inv.where(kp + (key,))}: unknown key (known: {known})")
        _check_value(inv, value, spec[key], kp + (key,))


def _check_value(inv, value, f: Field, kp: tuple) -> None:
    if value is None:
        raise InventoryError(f"{inv.where(kp)}: missing value")
    if isinstance(f.kind, dict):
        if f.shorthand and isinstance(value, str):
            return _check_value(inv, value, f.kind[f.shorthand], kp)
        return _check_mapping(inv, value, f.kind, kp)
    if f.kind is dict:
        if not isinstance(value, dict):
            raise InventoryError(f"{inv.where(kp)}: expected a mapping, got {_typename(value)}")
        for k, v in value.items():
            if isinstance(f.item, dict):
                _check_mapping(inv, v or {}, f.item, kp + (k,))
            elif not isinstance(v, str | int | float | bool):
                raise InventoryError(f"{inv.where(kp + (k,))}: expected a scalar value")
        return None
    if f.kind is list:
        if not isinstance(value, list):
            raise InventoryError(f"{inv.where(kp)}: expected a list, got {_typename(value)}")
        for i, v in enumerate(value):
            problem = f.check(v) if f.check else ""
            if problem:
                raise InventoryError(f"{inv.where(kp + (i,))}: {problem}")
            if not isinstance(v, str) and not f.check:
                raise InventoryError(
                    f"{inv.where(kp + (i,))}: expected a string, got {_typename(v)}"
                )
        return None
    if not _is_type(value, f.kind):
        raise InventoryError(f"{inv.where(kp)}: expected {f.kind.__name__}, got {_typename(value)}")
    if f.choices and value not in f.choices:
        raise InventoryError(
            f"{inv.where(kp)}: must be one of {', '.join(f.choices)} (got {value!r})"
        )
    return None


def _is_type(value, kind) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _typename(value) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- resolved settings


def check_settings(inv, project: dict, s: dict, sources: dict) -> None:
    """Every resolved value of one environment that could harm a host or mislead a run."""
    local = s["connection"] == "local"
    problem = unsafe_deploy_to(s["deploy_to"], local)
    if problem:
        raise InventoryError(f"{origin(inv, sources, 'deploy_to')}: {problem}")
    for i, host in enumerate(s["hosts"]):
        if not isinstance(host, str) or not HOST.match(host):
            raise InventoryError(
                f"{origin(inv, sources, 'hosts', i)}: invalid host "
                f"{host!r} (expected an ssh alias or user@host:port)"
            )
    if s["protected"] and s["host_keys"] == "accept-new":
        raise InventoryError(
            f"{origin(inv, sources, 'host_keys')}: "
            "accept-new is refused for a protected environment (pin the host keys)"
        )
    _check_lock_times(inv, s["timeouts"], sources)
    if s["cutover"]["keep_old"] < 0:
        raise InventoryError(
            f"{origin(inv, sources, 'cutover.keep_old')}: must not be negative, "
            f"got {s['cutover']['keep_old']:g}"
        )
    _check_shared(inv, s, sources)
    _check_dump_options(inv, s, sources)
    if not local:
        _check_server_names(inv, project, s, sources)


def _check_shared(inv, s: dict, sources: dict) -> None:
    """Shared entries are joined under DEPLOY_TO/shared and the release, then `rm -rf`'d there."""
    for key in ("shared_files", "shared_dirs"):
        for i, entry in enumerate(s[key]):
            if shared_problem(entry):
                raise InventoryError(
                    f"{origin(inv, sources, key, i)}: {entry!r} must be a relative name inside "
                    "the release (no leading / or -, no '..')"
                )


def shared_problem(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return not parts or name.startswith(("/", "-")) or ".." in parts


def _check_dump_options(inv, s: dict, sources: dict) -> None:
    """Options added to pg_dump: options only (a word not starting with - would be read as the
    database name), and none that changes where or in which format the snapshot is written."""
    db = s["database"]
    for i, opt in enumerate(db["dump_options"]):
        where = origin(inv, sources, "database.dump_options", i)
        if db["engine"] != "postgresql":
            raise InventoryError(
                f"{where}: dump_options are pg_dump's (engine is {db['engine']}): "
                "set database.dump_options: [] for this environment"
            )
        if not opt.startswith("-") or opt.split("=")[0] in OWN_DUMP_OPTIONS or opt[:2] == "-F":
            raise InventoryError(
                f"{where}: {opt!r} is not an option mlctl can pass on "
                "(mlctl sets the format and the file: -Fc -f)"
            )


OWN_DUMP_OPTIONS = ("-f", "--file", "--format", "-d", "--dbname")


def _check_server_names(inv, project: dict, s: dict, sources: dict) -> None:
    if not NAME.match(project["name"]):
        raise InventoryError(
            f"{inv.where(('project', 'name'))}: {project['name']!r}: use a-z, 0-9, - and _"
        )
    if not SERVER_NAME.match(s["server_name"]):
        raise InventoryError(
            f"{origin(inv, sources, 'server_name')}: {s['server_name']!r}: invalid characters"
        )
    if not SERVER_DEPLOY_TO.match(s["deploy_to"]):
        raise InventoryError(
            f"{origin(inv, sources, 'deploy_to')}: {s['deploy_to']!r}: use letters, digits, "
            "/ . _ - only (it goes into systemd units and the nginx site)"
        )
    if not NAME.match(s["app_user"]):
        raise InventoryError(
            f"{origin(inv, sources, 'app_user')}: {s['app_user']!r}: invalid user name"
        )


def _check_lock_times(inv, t: dict, sources: dict) -> None:
    if t["lock_lease"] < MIN_LEASE:
        raise InventoryError(
            f"{origin(inv, sources, 'timeouts.lock_lease')}: must be at least "
            f"{MIN_LEASE:g} seconds, got {t['lock_lease']:g}"
        )
    if t["lock_wait"] < 0:
        raise InventoryError(
            f"{origin(inv, sources, 'timeouts.lock_wait')}: must not be negative, "
            f"got {t['lock_wait']:g}"
        )


def origin(inv, sources: dict, key: str, index: int | None = None) -> str:
    """Where `key`'s value came from, as written: `file:line: key path`, a variable or a flag;
    `index`: one item of a list value."""
    label = sources.get(key, "")
    if label == "defaults" or label.startswith("environments."):
        item = () if index is None else (index,)
        return inv.where((*label.split(".", 1), *key.split("."), *item))
    if label == "flags":
        where = f"--set {key}"
    elif label == "environment variables":
        where = "MLCTL_" + key.upper().replace(".", "__")
    else:
        where = key
    return where if index is None else f"{where}: {key}[{index}]"
