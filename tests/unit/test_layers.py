"""The import rule at the top of the package: a layer imports only itself and the layers above."""

import ast
from pathlib import Path

import mlctl

PACKAGE = Path(mlctl.__file__).parent
LAYERS = ["remote", "core", "config", "commands", "transport", "project", "tasks", "cli"]
# Fabfiles written by earlier versions import `mlctl.tasks.namespace`; the package hands it
# over lazily (module __getattr__), so importing a task never loads the front ends.
ALLOWED = {("tasks/__init__.py", "cli")}


def imported_layers(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the layer rule reads absolute ones")
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        layers = {n.split(".")[1] for n in names if n.startswith("mlctl.")}
        for layer in sorted(layers & set(LAYERS)):
            yield node.lineno, layer


def violations():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            continue
        layer = rel.parts[0]
        for line, target in imported_layers(path):
            if (rel.as_posix(), target) in ALLOWED:
                continue
            if layer == "remote" and target != "remote":
                yield f"{rel}:{line} imports {target}: host-side programs import no mlctl module"
            elif LAYERS.index(target) > LAYERS.index(layer):
                yield f"{rel}:{line}: {layer} imports {target}, a layer below it"


def test_every_module_is_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(
        LAYERS
    )


def test_no_layer_imports_a_layer_below_it():
    assert list(violations()) == []


def test_the_rule_is_written_at_the_top_of_the_package():
    doc = mlctl.__doc__
    positions = [doc.index(f"\n  {layer} ") for layer in LAYERS]
    assert positions == sorted(positions)


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from mlctl.tasks import deploy\nfrom mlctl.core import shell\n")
    assert list(imported_layers(bad)) == [(1, "tasks"), (2, "core")]
