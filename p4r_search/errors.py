"""The few typed errors that library code raises. The CLI turns them into messages in one place."""

from __future__ import annotations

from collections.abc import Iterable


class P4RError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class InputError(P4RError):
    """Bad input data: names the file, the line (1-based) and what is wrong; `hint` (what to do about it) is
    shown in the message but not written to rejects files, which repeat `reason` line after line."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, path: str, line: int | None, reason: str, hint: str | None = None):
        self.path = str(path)
        self.line = line
        self.reason = reason
        self.hint = hint
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}" + (f"; {hint}" if hint else ""))


class ChoiceError(P4RError, ValueError):
    """A value that is not one of the valid choices."""

    exit_code = 64  # EX_USAGE

    def __init__(self, what: str, value: object, choices: Iterable[object]):
        self.what = what
        self.value = value
        self.choices = list(choices)
        shown = ", ".join(repr(c) for c in self.choices)
        super().__init__(f"invalid {what} {value!r}; valid choices: {shown}")


class ConfigError(P4RError, ValueError):
    """A setting that is out of range or inconsistent with another setting."""

    exit_code = 64


class NotFoundError(P4RError, KeyError):
    """A user, item or index that does not exist."""

    exit_code = 66  # EX_NOINPUT

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class IndexStateError(P4RError):
    """The index directory is unusable as it is; the message names the command that repairs it."""

    exit_code = 74  # EX_IOERR


class ConflictError(P4RError):
    """An event whose id the history store already has with other content: nothing of its batch is written.
    `position` is the event's index in its batch."""

    exit_code = 65

    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


class HistoryStoreError(IndexStateError):
    """The history store cannot be read or written (locked too long, disk full, not a store)."""


class IncompleteRunError(P4RError):
    """The run finished what it could: some work failed or was stopped (e.g. by a cost cap). Rerun to finish."""

    exit_code = 75  # EX_TEMPFAIL
