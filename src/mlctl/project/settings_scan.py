"""Read a Django project's settings without importing them (ast only).

Follows the settings through the project's own imports (`from .base import *`, `from
config.settings.base import X`, `importlib.import_module("pkg.settings")`) in the order Python
would run them, and reports what init and the deploy's preflight need: the last assignment of each
setting, the environment variables read without a default, the packages imported.

A variable counts as required only when reading it raises without it and the read runs
unconditionally at import: module level, outside `if`/`try`/loop bodies and functions. The test of
an `if` runs, its bodies may not; `a or b` and `x if c else y` may skip their later parts.
Conditional reads are kept apart (`maybe`): init mentions them, the preflight never refuses a
deploy for one.

Readers understood: `os.environ["X"]`, django-environ (`env("X")`, `env.str("X")`,
`env.db()` -> DATABASE_URL, ... with no default and none in `Env(X=(type, default))`),
python-decouple's `config("X")`. `os.environ.setdefault("X", ...)` or `os.environ["X"] = ...`
before a read provides X.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# django-environ methods whose default is the 3rd positional argument (var, cast, default).
ENVIRON_CAST_FIRST = {"__call__", "get_value", "list", "tuple", "dict"}
# django-environ methods that read a conventional variable when called without one.
ENVIRON_DEFAULT_VARS = {
    "db": "DATABASE_URL",
    "db_url": "DATABASE_URL",
    "cache": "CACHE_URL",
    "cache_url": "CACHE_URL",
    "email": "EMAIL_URL",
    "email_url": "EMAIL_URL",
    "search_url": "SEARCH_URL",
    "channels_url": "CHANNELS_URL",
    "channels": "CHANNELS_URL",
}
ENVIRON_METHODS = (
    ENVIRON_CAST_FIRST
    | set(ENVIRON_DEFAULT_VARS)
    | {
        "str",
        "bool",
        "int",
        "float",
        "json",
        "url",
        "path",
        "bytes",
        "parse_value",
    }
)
# What every shared .env has (mlctl setup and a local deploy write them): settings may need them.
WRITTEN_BY_MLCTL = frozenset(
    {
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "MEDIA_ROOT",
        "DJANGO_SETTINGS_MODULE",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
    }
)
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|(^|_)KEY$|KEY_ID|DSN|CREDENTIAL|PRIVATE|AUTH"
)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name.upper()))


@dataclass
class Read:
    """One environment variable read that raises without it."""

    name: str
    module: str  # the settings module that reads it
    setting: str  # the setting assigned from it ("" when not a plain assignment)


@dataclass
class Scan:
    modules: list[str] = field(default_factory=list)  # in the order they run
    values: dict[str, ast.expr] = field(default_factory=dict)  # last assignment of each name
    assigned_in: dict[str, str] = field(default_factory=dict)  # name -> module of that value
    required: list[Read] = field(default_factory=list)  # unconditional, no default
    maybe: list[Read] = field(default_factory=list)  # conditional reads without a default
    provided: set[str] = field(default_factory=set)  # put into os.environ by the settings
    imports: set[str] = field(default_factory=set)  # top-level names of packages imported
    strings: list[str] = field(default_factory=list)  # every string constant, in order
    texts: dict[str, str] = field(default_factory=dict)  # module -> source

    def value(self, name: str) -> str | None:
        """A setting's last value: the string for a constant, else its source expression."""
        node = self.values.get(name)
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return ast.unparse(node)

    def required_names(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.required))

    def text(self) -> str:
        return "\n".join(self.texts.values())


Reader = Callable[[str], "str | None"]  # a path relative to the project root -> its text


def module_paths(module: str) -> list[str]:
    base = "/".join(module.split("."))
    return [base + ".py", base + "/__init__.py"]


def read_module(read: Reader, module: str) -> tuple[str, str] | None:
    """(path, text) of a project module, None when it is not in the project."""
    for path in module_paths(module):
        text = read(path)
        if text is not None:
            return path, text
    return None


def scan(read: Reader, module: str) -> Scan:
    out = Scan()
    _Scanner(read, out).run(module)
    return out


def absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` inside `module`."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*parts, name] if name else parts)


class _Scanner:
    def __init__(self, read: Reader, out: Scan):
        self.read, self.out = read, out
        self.env_objects: set[str] = set()  # names bound to environ.Env()
        self.env_defaults: set[str] = set()  # Env(X=(type, default)) schemes
        self.decouple: set[str] = set()  # names bound to decouple's config
        self.seen: set[str] = set()

    # ------------------------------------------------------------ modules

    def run(self, module: str) -> None:
        if module in self.seen:
            return
        self.seen.add(module)
        found = read_module(self.read, module)
        if found is None:
            return
        path, text = found
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return
        self.out.modules.append(module)
        self.out.texts[module] = text
        self.module, self.is_package = module, path.endswith("__init__.py")
        for node in tree.body:
            self.statement(node, conditional=False)

    def follow(self, target: str) -> None:
        """Run a project module imported here (before the rest of this one, as Python does)."""
        if not target or target in self.seen:
            return
        here = (self.module, self.is_package)
        if read_module(self.read, target) is not None:
            self.run(target)
        else:
            self.out.imports.add(target.split(".")[0])
        self.module, self.is_package = here

    # ------------------------------------------------------------ statements

    def statement(self, node: ast.stmt, conditional: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.follow(alias.name)
            return
        if isinstance(node, ast.ImportFrom):
            self.import_from(node)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return  # their bodies do not run at import
        if isinstance(node, ast.If):
            self.expression(node.test, "", conditional)
            for child in node.body + node.orelse:
                self.statement(child, True)
            return
        if isinstance(node, ast.Try | ast.TryStar):
            for child in node.body + node.orelse:
                self.statement(child, True)
            for handler in node.handlers:
                for child in handler.body:
                    self.statement(child, True)
            for child in node.finalbody:
                self.statement(child, conditional)
            return
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            self.expression(node.iter if isinstance(node, ast.For) else node.test, "", conditional)
            for child in node.body + node.orelse:
                self.statement(child, True)
            return
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                self.expression(item.context_expr, "", conditional)
            for child in node.body:
                self.statement(child, conditional)
            return
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            self.assignment(node, conditional)
            return
        if isinstance(node, ast.Expr):
            self.expression(node.value, "", conditional)

    def import_from(self, node: ast.ImportFrom) -> None:
        target = absolute(self.module, self.is_package, node.level, node.module)
        self.follow(target)
        if node.module == "decouple" or (node.module or "").startswith("decouple."):
            self.decouple |= {a.asname or a.name for a in node.names if a.name == "config"}

    def assignment(self, node, conditional: bool) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        if value is None:
            return
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        setting = names[0] if len(names) == 1 and names[0].isupper() else ""
        self.expression(value, setting, conditional)
        for t in targets:
            self.provides(t)
        if isinstance(value, ast.Call) and _callee(value.func)[-1:] == ["Env"]:
            self.env_objects.update(names)
            self.env_defaults |= {
                k.arg
                for k in value.keywords
                if k.arg and isinstance(k.value, ast.Tuple) and len(k.value.elts) >= 2
            }
        if isinstance(node, ast.AugAssign):
            return
        for name in names:
            # A conditional assignment is shown only when nothing unconditional is known.
            if not conditional or name not in self.out.values:
                self.out.values[name] = value
                self.out.assigned_in[name] = self.module

    def provides(self, target: ast.expr) -> None:
        """`os.environ["X"] = ...` puts X into the environment."""
        if isinstance(target, ast.Subscript) and _is_environ(target.value):
            key = _const_str(target.slice)
            if key:
                self.out.provided.add(key)

    # ------------------------------------------------------------ expressions

    def expression(self, node: ast.expr, setting: str, conditional: bool) -> None:
        """Walk an expression in evaluation order, skipping what may not be evaluated."""
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            self.out.strings.append(node.value)
            return
        if isinstance(node, ast.BoolOp):
            self.expression(node.values[0], setting, conditional)
            for later in node.values[1:]:
                self.expression(later, setting, True)
            return
        if isinstance(node, ast.IfExp):
            self.expression(node.test, setting, conditional)
            self.expression(node.body, setting, True)
            self.expression(node.orelse, setting, True)
            return
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = _const_str(node.slice)
            if key and isinstance(node.ctx, ast.Load):
                self.read_env(key, setting, conditional)
        if isinstance(node, ast.Call):
            self.call(node, setting, conditional)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child, setting, conditional)

    def call(self, node: ast.Call, setting: str, conditional: bool) -> None:
        callee = _callee(node.func)
        if callee[-2:] == ["environ", "setdefault"] and node.args:
            key = _const_str(node.args[0])
            if key:
                self.out.provided.add(key)
            return
        if callee[-1:] == ["import_module"] and node.args:
            target = _const_str(node.args[0])
            if target and not target.startswith("."):
                self.follow(target)
            return
        name = None
        if len(callee) == 1 and callee[0] in self.env_objects:
            name = self.environ_read(node, "__call__")
        elif len(callee) == 2 and callee[0] in self.env_objects and callee[1] in ENVIRON_METHODS:
            name = self.environ_read(node, callee[1])
        elif len(callee) == 1 and callee[0] in self.decouple:
            has_default = len(node.args) >= 2 or _has_kw(node, "default")
            name = None if has_default else _const_str(node.args[0]) if node.args else None
        if name:
            self.read_env(name, setting, conditional)

    def environ_read(self, node: ast.Call, method: str) -> str | None:
        """The variable a django-environ call reads and needs, None when it has a default."""
        position = 2 if method in ENVIRON_CAST_FIRST else 1
        if len(node.args) > position or _has_kw(node, "default"):
            return None
        var = node.args[0] if node.args else _kw(node, "var")
        name = _const_str(var) if var is not None else ENVIRON_DEFAULT_VARS.get(method)
        if name in self.env_defaults:
            return None
        return name

    def read_env(self, name: str, setting: str, conditional: bool) -> None:
        if name in self.out.provided:
            return
        read = Read(name, self.module, setting)
        (self.out.maybe if conditional else self.out.required).append(read)


def _callee(func: ast.expr) -> list[str]:
    """`a.b.c(...)` -> ["a", "b", "c"]; [] for anything but names and attributes."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
        return parts[::-1]
    return []


def _is_environ(node: ast.expr) -> bool:
    return _callee(node) in (["os", "environ"], ["environ"])


def _const_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _has_kw(node: ast.Call, name: str) -> bool:
    return any(k.arg == name for k in node.keywords)


def _kw(node: ast.Call, name: str):
    return next((k.value for k in node.keywords if k.arg == name), None)
