"""Views: tensors as functions from a multi-index to an element expression.

A `View` is what a lowering rule sees of its operands: a shape, a dtype and `at(index)`,
which builds the expression of one element. A materialized value is a view that loads from
its buffer; an elementwise op or an index map (broadcast, permute, slice...) is a view
composed from its operands' views, so chains of them evaluate in one loop without
intermediate buffers.

Runtime checks that an element needs (an index in range) are collected by the `checks()`
context while expressions are built, and the kernel emits them before the store.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from backends.llvm.loops import (INDEX, Buffer, Check, Const, Expr, Load, Op, flat_index,
                                 idx)

_LOCAL = threading.local()  # the checks() collectors of this thread (graphs may compile
                            # on several threads at once)


def _collectors() -> list:
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


@dataclass
class View:
    shape: tuple[int, ...]
    dtype: str
    at: Callable[[list[Expr]], Expr]
    buf: Buffer | None = None  # set when the view is exactly a contiguous buffer

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def buffer_view(buf: Buffer) -> View:
    shape = tuple(buf.shape)
    return View(shape, buf.dtype, lambda index: Load(buf, flat_index(index, shape)), buf)


def broadcast_view(v: View, shape: Sequence[int]) -> View:
    """v read under NumPy broadcasting to `shape` (size-1 axes read index 0)."""
    shape = tuple(shape)
    if v.shape == shape:
        return v
    lead = len(shape) - v.ndim

    def at(index):
        return v.at([Const(0) if d == 1 else index[lead + a] for a, d in enumerate(v.shape)])
    return View(shape, v.dtype, at)


# -- expression helpers used by the lowering rules -------------------------------------------
def const(value, dtype: str) -> Expr:
    if dtype.startswith("float"):
        return Const(float(value), dtype)
    if dtype == "bool":
        return Const(bool(value), dtype)
    return Const(int(value), dtype)


def op(name: str, *args: Expr, dtype: str | None = None, attr=None) -> Expr:
    return Op(name, args, dtype or args[0].dtype, attr)


def cmp(name: str, a: Expr, b: Expr) -> Expr:
    return Op(name, (a, b), "bool")


def select(c: Expr, a: Expr, b: Expr) -> Expr:
    return Op("select", (c, a, b), a.dtype)


def cast(x: Expr, dtype: str) -> Expr:
    return x if x.dtype == dtype else Op("cast", (x,), dtype)


def imin(a, b) -> Expr:
    return Op("minimum", (idx(a), idx(b)), INDEX)


def imax(a, b) -> Expr:
    return Op("maximum", (idx(a), idx(b)), INDEX)


# -- runtime checks ----------------------------------------------------------------------------
@contextmanager
def checks() -> Iterator[list]:
    """Collect the Check statements that building expressions asks for."""
    found: list = []
    _collectors().append(found)
    try:
        yield found
    finally:
        _collectors().pop()


def require(cond: Expr, code: int, *args: Expr) -> None:
    """Ask for a runtime check; outside a checks() context it is a lowering bug."""
    if not _collectors():
        raise AssertionError("a runtime check was requested outside checks()")
    _collectors()[-1].append(Check(cond, code, tuple(args)))
