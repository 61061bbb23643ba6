"""Errors the user can act on.

Each class is one kind of failure with its own exit code; the CLI prints ``str(error)`` as the one
line the run ends with (the traceback only with ``--debug``).
"""


class MlctlError(Exception):
    """Base class: a failure with a one-line, actionable message."""

    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InventoryError(MlctlError):
    """The inventory cannot be read or is invalid (names file:line: key path)."""

    exit_code = 3


class UnknownEnvironment(InventoryError):
    pass


class GuardRefused(MlctlError):
    """A protected-environment guard said no."""

    exit_code = 4


class ConnectError(MlctlError):
    """A host cannot be reached, authenticated or its host key is not trusted."""

    exit_code = 5


class RemoteCommandFailed(MlctlError):
    """A step failed on a host."""

    exit_code = 6

    def __init__(self, host: str, step: str, exit_code: int | None, detail: str = "", hint=""):
        self.host, self.step, self.code, self.detail = host, step, exit_code, detail
        why = f"exit {exit_code}" if exit_code is not None else "no exit status"
        tail = f": {detail}" if detail else ""
        super().__init__(f"{host}: step '{step}' failed ({why}){tail}", hint)


class CommandTimeout(MlctlError):
    """A step ran past its limit (timeouts.command), on the host or waiting for it."""

    exit_code = 7


class LockHeld(MlctlError):
    """Another run holds the deploy lock."""

    exit_code = 8


class PreflightFailed(MlctlError):
    """A check before anything changes said no (work tree, disk, Python, .env)."""

    exit_code = 9


class DeployFailed(MlctlError):
    """A deploy step failed: a migration, the health check, a port in use."""

    exit_code = 10


class RollbackFailed(MlctlError):
    """A rollback could not bring the previous release back."""

    exit_code = 11


class NeedsOperator(MlctlError):
    """State the tool refuses to repair on its own (e.g. a migration may still be running)."""

    exit_code = 12


class UsageError(MlctlError):
    """The command line itself is wrong."""

    exit_code = 2
