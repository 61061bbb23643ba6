"""Python programs run on hosts with `python3 -c` (fixed source text, arguments quoted)."""

from importlib.resources import files


def source(name: str) -> str:
    return files(__package__).joinpath(f"{name}.py").read_text()
