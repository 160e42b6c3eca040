"""Attribute literals as the parser reads them, and the readers that turn a literal into an
attribute value of a given kind of the op table (int, float, bool, str, ints, floats, dtype)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from dlc.ir.text.lexer import Token
from dlc.ir.types import LONG, SHORT


@dataclass
class Lit:
    """An attribute value as written: kind is int, float, bool, str, none, ident, list, dict
    or value; lists hold Lits, dicts hold (key, key token, Lit) triples."""
    kind: str
    value: Any
    tok: Token

    def describe(self) -> str:
        if self.kind in ("list", "dict"):
            return f"a {self.kind} ({self.tok.describe()} at {self.tok.line}:{self.tok.col})"
        return f"{_LIT_NAMES.get(self.kind, self.kind)} {self.tok.text}"


_LIT_NAMES = {"str": "string", "ident": "identifier", "value": "value"}


WORDS = {"true": ("bool", True), "false": ("bool", False), "none": ("none", None),
         "inf": ("float", math.inf), "nan": ("float", math.nan)}
KIND_WANTED = {"int": "an int", "float": "a float", "bool": "true or false",
               "str": "a quoted string", "ints": "a list of ints like [0, 1]",
               "floats": "a list of floats like [0.5, 1.0]",
               "dtype": "a dtype (" + ", ".join(SHORT.values()) + ")"}


class KindError(Exception):
    """An attribute literal of the wrong kind; `lit` is the offending (sub)literal."""

    def __init__(self, lit: Lit):
        self.lit = lit


def _read_list(lit: Lit, item: Callable[[Lit], Any]) -> tuple:
    if lit.kind != "list":
        raise KindError(lit)
    return tuple(item(x) for x in lit.value)


def _read_scalar(*kinds: str) -> Callable[[Lit], Any]:
    def read(lit: Lit) -> Any:
        if lit.kind not in kinds:
            raise KindError(lit)
        return lit.value
    return read


def _read_float(lit: Lit) -> float:
    return float(_read_scalar("int", "float")(lit))  # an int is a fine way to write 1.0


def _read_dtype(lit: Lit) -> str:
    if lit.kind != "ident" or lit.value not in LONG:
        raise KindError(lit)
    return LONG[lit.value]


# How each attribute kind of the op table is read from a literal.
READERS: dict[str, Callable[[Lit], Any]] = {
    "int": _read_scalar("int"),
    "float": _read_float,
    "bool": _read_scalar("bool"),
    "str": _read_scalar("str"),
    "ints": lambda lit: _read_list(lit, _read_scalar("int")),
    "floats": lambda lit: _read_list(lit, _read_float),
    "dtype": _read_dtype,
}
