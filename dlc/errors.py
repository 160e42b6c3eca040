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


class ConfigError(DlcError, ValueError):
    """A layer was built with an argument it cannot take. Also a ValueError, which is what
    PyTorch raises for the same arguments, so code written against torch.nn still catches it."""


class TensorTypeError(TraceError, TypeError):
    """A value that cannot stand for a tensor, or a tensor used where Python wants something
    else (len() of a 0-d tensor). Also a TypeError, which Python's protocols expect."""


class InputNameError(DlcError, KeyError):
    """A graph was asked for an input name it does not have. Also a KeyError, as a lookup by
    name is; printed as its message (KeyError alone would print it quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
