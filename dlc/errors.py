"""Errors users see. Each says what went wrong and where (layer, file:line, line:col)."""
from __future__ import annotations


class DlcError(Exception):
    """Base of every error dlc raises on bad input."""


class ShapeError(DlcError):
    """An op got inputs whose shapes or dtypes it cannot take."""


class TraceError(DlcError):
    """The traced Python code did something a static graph cannot express."""


class VerifyError(DlcError):
    """A graph broke an IR invariant (types, SSA order, arity, attributes)."""


class ParseError(DlcError):
    """The IR text is malformed; the message carries line:col."""

    def __init__(self, message: str, line: int, col: int, source: str | None = None):
        self.line, self.col, self.source = line, col, source
        where = f"{source}:" if source else ""
        super().__init__(f"{where}{line}:{col}: {message}")


class ArgumentError(DlcError):
    """An Executable was called with the wrong count, shape or dtype of arrays."""
