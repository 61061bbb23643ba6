"""Console output through rich, colored by environment; every message passes the secret mask."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from mlctl.core.shell import mask

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_secrets: list[str] = []
quiet = False


def add_secrets(values) -> None:
    _secrets.extend(v for v in values if v and v not in _secrets)


def clean(text: str) -> str:
    return mask(str(text), _secrets)


def banner(env: str, color: str, action: str, hosts: list[str]) -> None:
    if quiet:
        return
    where = ", ".join(hosts)
    _err.print(
        f"[bold {color}]▌ {escape(env.upper())}[/] {escape(action)} → {escape(clean(where))}"
    )


def step(host: str, text: str, color: str = "cyan") -> None:
    if not quiet:
        _err.print(f"  [{color}]{escape(host)}[/] {escape(clean(text))}")


def info(text: str) -> None:
    if not quiet:
        _err.print(escape(clean(text)))


def warn(text: str) -> None:
    _err.print(f"[yellow]warning:[/] {escape(clean(text))}")


def fail(text: str) -> None:
    _err.print(f"[bold red]error:[/] {escape(clean(text))}")


def done(text: str) -> None:
    _err.print(f"[bold green]✓[/] {escape(clean(text))}")


def out(text: str) -> None:
    """Data for stdout (JSON, tables): masked, no markup."""
    sys.stdout.write(clean(text) + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()


def table(tbl) -> None:
    from io import StringIO

    buf = StringIO()
    Console(file=buf, width=max(_out.width, 100), highlight=False).print(tbl)
    out(buf.getvalue())


def ask(prompt: str, color: str) -> str:
    _err.print(f"[bold {color}]{escape(prompt)}[/] ", end="")
    return input()


def clip(text: str, limit: int = 300) -> str:
    """`text` cut to at most `limit` characters at a word's end, marked with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"
