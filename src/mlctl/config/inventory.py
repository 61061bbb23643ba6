"""Find, read and validate `environments.yaml`; resolve one environment's settings.

Merge order (lowest first), implemented once in `resolve()`:
    built-in defaults < `defaults:` < `environments.<name>:` < MLCTL_* variables < flags
Every error names the file, the line and the key path, before any connection is made.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlctl.config import schema, sections, validation
from mlctl.config.schema import ENV_KEYS, PROJECT, Field
from mlctl.core.errors import InventoryError, UnknownEnvironment

FILENAME = "environments.yaml"
# MLCTL_* variables that steer mlctl itself rather than override inventory keys.
CONTROL_VARS = {
    "MLCTL_INVENTORY",
    "MLCTL_CONFIRM",
    "MLCTL_STATE_DIR",
    "MLCTL_LOG_DIR",
    "MLCTL_SUMMARY",
    "MLCTL_USER_NAME",
    "MLCTL_ENV",
}
# Prefixes of variables owned by other tools (the test-host farm), never inventory keys.
FOREIGN_PREFIXES = ("MLCTL_FARM_",)
TOP_LEVEL = "(top level)"  # the key path shown for the document itself


@dataclass
class Inventory:
    path: Path
    data: dict
    lines: dict  # key path tuple -> line number

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def environments(self) -> list[str]:
        return list(self.data.get("environments", {}))

    def where(self, keypath: tuple) -> str:
        """`file:line: a.b[1]` for a key path (the nearest known line)."""
        probe = tuple(keypath)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return f"{self.path.name}:{self.lines.get(probe, 1)}: {dotted(keypath) or TOP_LEVEL}"


@dataclass
class EnvConfig:
    """One environment's resolved settings: typed sections (`cfg.health.timeout`, sections.py),
    and `cfg["key"]` for the plain resolved values."""

    name: str
    settings: dict
    project: dict
    inventory: Inventory
    sources: dict = field(default_factory=dict)  # key path -> where its value came from

    def __getitem__(self, key):
        return self.settings[key]

    def get(self, key, default=None):
        return self.settings.get(key, default)

    thresholds = sections.Typed(sections.Thresholds)
    health = sections.Typed(sections.Health)
    timeouts = sections.Typed(sections.Timeouts)
    database = sections.Typed(sections.Database)
    gunicorn = sections.Typed(sections.Gunicorn)
    hooks = sections.Typed(sections.Hooks)
    rolling = sections.Typed(sections.Rolling)
    build = sections.Typed(sections.Build)
    cutover = sections.Typed(sections.Cutover)

    # The plain settings, one name each (schema.py says what each means; `hosts` and `color`
    # are properties below, as they fill in a default).
    connection = sections.Value()
    user = sections.Value()
    app_user = sections.Value()
    deploy_to = sections.Value()
    python = sections.Value()
    keep_releases = sections.Value()
    service = sections.Value()
    bind = sections.Value()
    server_name = sections.Value()
    shared_files = sections.Value()
    shared_dirs = sections.Value()
    secrets = sections.Value()
    env = sections.Value()
    ssh_config = sections.Value()
    known_hosts = sections.Value()
    identity_file = sections.Value()
    host_keys = sections.Value()
    protected = sections.Value()
    allowed_users = sections.Value()
    confirm = sections.Value()
    allow_root = sections.Value()
    branch = sections.Value()
    tag_deploys = sections.Value()
    require_tests = sections.Value()
    tls_cert = sections.Value()

    @property
    def local(self) -> bool:
        return self.settings["connection"] == "local"

    @property
    def color(self) -> str:
        return self.settings["color"] or schema.ENV_COLORS.get(self.name, "cyan")

    @property
    def hosts(self) -> list[str]:
        return ["localhost"] if self.local else list(self.settings["hosts"])

    def secret_values(self) -> list[str]:
        return schema.secret_values(self.settings)


def dotted(keypath) -> str:
    out = ""
    for k in keypath:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


# ---------------------------------------------------------------- finding and reading


def find(explicit: str | None = None, start: Path | None = None) -> Path:
    """--inventory, else MLCTL_INVENTORY, else environments.yaml here or in the nearest parent."""
    chosen = explicit or os.environ.get("MLCTL_INVENTORY")
    if chosen:
        p = Path(chosen).expanduser()
        if not p.is_file():
            raise InventoryError(f"{chosen}: inventory file not found")
        return p.resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / FILENAME).is_file():
            return d / FILENAME
    raise InventoryError(
        f"{FILENAME} not found in {here} or its parents",
        "run `mlctl init` or pass --inventory PATH",
    )


def load(path: Path) -> Inventory:
    try:
        text = path.read_text()
    except OSError as e:
        raise InventoryError(f"{path.name}: cannot read: {e.strerror}") from None
    lines: dict = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InventoryError(f"{path.name}:{line}: invalid YAML: {problem}") from None
    if node is None:
        raise InventoryError(f"{path.name}:1: {TOP_LEVEL}: the file is empty")
    data = _to_python(node, (), lines, path.name)
    inv = Inventory(path=path.resolve(), data=data, lines=lines)
    validation.validate(inv)
    for name in inv.environments:  # every environment's values, before any is used
        resolve(inv, name, {}, {})
    return inv


def _to_python(node, keypath: tuple, lines: dict, fname: str):
    """Convert a composed YAML node to Python data, recording each key's line."""
    lines[keypath] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for knode, vnode in node.value:
            key = knode.value
            kp = keypath + (key,)
            if key in out:
                raise InventoryError(
                    f"{fname}:{knode.start_mark.line + 1}: {dotted(kp)}: duplicate key"
                )
            out[key] = _to_python(vnode, kp, lines, fname)
            lines[kp] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, keypath + (i,), lines, fname) for i, v in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node, deep=True)


# ---------------------------------------------------------------- validation


# ---------------------------------------------------------------- merging


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _expand_shorthands(layer: dict) -> dict:
    """A scalar where the schema allows one for a mapping (`database: sqlite`, `cutover:
    restart`) becomes that mapping's key (`{engine: sqlite}`)."""
    layer = dict(layer or {})
    for key, f in ENV_KEYS.items():
        if f.shorthand and isinstance(layer.get(key), str):
            layer[key] = {f.shorthand: layer[key]}
    return layer


def resolve(
    inv: Inventory, name: str, environ: dict | None = None, flags: dict | None = None
) -> EnvConfig:
    """The one merge: built-ins < defaults: < environments.NAME: < MLCTL_* < flags."""
    envs = inv.data["environments"]
    if name not in envs:
        known = ", ".join(envs) or "none"
        raise UnknownEnvironment(f"unknown environment {name!r} (known: {known})")
    layers = [
        ("built-in", schema.defaults_of(ENV_KEYS)),
        ("defaults", _expand_shorthands(inv.data.get("defaults"))),
        (f"environments.{name}", _expand_shorthands(envs[name])),
        ("environment variables", env_overrides(environ if environ is not None else os.environ)),
        ("flags", flag_overrides(flags or {})),
    ]
    settings: dict = {}
    sources: dict = {}
    for label, layer in layers:
        settings = _deep_merge(settings, layer)
        _record_sources(layer, (), label, sources)
    _finish(inv, name, settings, sources)
    project = _deep_merge(schema.defaults_of(PROJECT), inv.data["project"])
    project["source"]["repo"] = _resolve_path(inv.root, project["source"]["repo"])
    validation.check_settings(inv, project, settings, sources)
    return EnvConfig(name=name, settings=settings, project=project, inventory=inv, sources=sources)


def _record_sources(layer: dict, kp: tuple, label: str, sources: dict) -> None:
    for k, v in layer.items():
        if isinstance(v, dict) and k not in ("secrets", "env"):
            _record_sources(v, kp + (k,), label, sources)
        else:
            sources[dotted(kp + (k,))] = label


def _finish(inv: Inventory, name: str, s: dict, sources: dict) -> None:
    for key in schema.PATH_KEYS:
        if s.get(key):
            s[key] = _resolve_path(inv.root, s[key])
    if s["connection"] == "local":
        s["deploy_to"] = _resolve_path(inv.root, s["deploy_to"])
    if not s["color"]:
        s["color"] = schema.ENV_COLORS.get(name, "cyan")
    if sources.get("health.url") == "built-in":  # one place for the port: the pidfile's bind
        s["health"]["url"] = f"http://{health_address(s)}/healthz"
    if s.get("tag_deploys") is None:
        s["tag_deploys"] = s["connection"] != "local"


def health_address(s: dict) -> str:
    """host:port where the app answers: the pidfile service's bind, else nginx on port 80."""
    host, _, port = s["bind"].rpartition(":")
    if s["service"] != "pidfile" or s["bind"].startswith("unix:") or not port.isdigit():
        return "127.0.0.1"
    return f"{'127.0.0.1' if host in ('', '0.0.0.0', '[::]', '::') else host}:{port}"


def _resolve_path(root: Path, value: str) -> str:
    if "://" in value or value.startswith("git@"):
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


# ---------------------------------------------------------------- overrides


def env_overrides(environ) -> dict:
    """MLCTL_KEY or MLCTL_SECTION__KEY variables, typed by the schema."""
    out: dict = {}
    for var, raw in environ.items():
        if not var.startswith("MLCTL_") or var in CONTROL_VARS or var.startswith(FOREIGN_PREFIXES):
            continue
        words = var[len("MLCTL_") :].split("__")
        path = [p.lower() for p in words]
        if len(path) > 1 and _field_at(path[:-1]) is not None and _field_at(path[:-1]).kind is dict:
            path[-1] = words[-1]  # a key of a free-form map keeps its case (secrets.API_KEY)
        _assign(out, path, raw, origin=var)
    return out


def flag_overrides(flags: dict) -> dict:
    """`--set a.b=value` pairs (and named flags already in key-path form)."""
    out: dict = {}
    for key, raw in flags.items():
        _assign(out, key.split("."), raw, origin=f"--set {key}")
    return out


def _assign(out: dict, path: list[str], raw, origin: str) -> None:
    f = _field_at(path)
    if f is None:
        raise InventoryError(f"{origin}: unknown setting {'.'.join(path)}")
    value = _parse_scalar(raw, f, origin) if isinstance(raw, str) else raw
    node = out
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value


def _field_at(path: list[str]) -> Field | None:
    spec: dict = ENV_KEYS
    f = None
    for i, p in enumerate(path):
        if spec is None or p not in spec:
            if f is not None and f.kind is dict and i == len(path) - 1:
                return Field(str)  # a key of a free-form map (secrets.X, env.X)
            return None
        f = spec[p]
        spec = f.kind if isinstance(f.kind, dict) else None
    return f


def _parse_scalar(raw: str, f: Field, origin: str):
    kind = f.kind
    if isinstance(kind, dict) and f.shorthand:
        return {f.shorthand: raw}
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return low in ("1", "true", "yes", "on")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is list:
            return [x.strip() for x in raw.split(",") if x.strip()]
    except ValueError:
        raise InventoryError(
            f"{origin}: expected {getattr(kind, '__name__', kind)}, got {raw!r}"
        ) from None
    if f.choices and raw not in f.choices:
        raise InventoryError(f"{origin}: must be one of {', '.join(f.choices)} (got {raw!r})")
    return raw
