"""Typed user-facing errors.

Every error a user can cause is a :class:`NetproxyError`. The CLI prints ``str(err)`` as one
line on stderr and exits with ``err.exit_code`` (2 for bad input); no traceback is shown.
"""

from __future__ import annotations


class NetproxyError(Exception):
    """Base of every error caused by input, flags or the environment."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(NetproxyError):
    """A Kubernetes object or configuration file is unreadable or invalid."""


class ParseError(NetproxyError):
    """An iptables-save / iptables-restore text could not be parsed."""

    def __init__(self, message: str, *, source: str = "<input>", line: int = 0, column: int = 0) -> None:
        self.source = source
        self.line = line
        self.column = column
        where = source
        if line:
            where += f":{line}"
            if column:
                where += f":{column}"
        super().__init__(message, where=where)


class TraceError(NetproxyError):
    """A packet description is invalid, or the walk cannot complete (loop, depth)."""


class BackendError(NetproxyError):
    """A network namespace or kernel tool refused an operation."""
