"""Lowering rules of the elementwise ops: each op's element as an expression of its operands'
elements (NumPy broadcasting), with the eager backend's semantics (dlc/ops/elementwise.py,
dlc/ops/random.py)."""
from __future__ import annotations

import math
from typing import Callable

from dlc.ir.graph import Node
from backends.llvm.loops import INDEX, Const, Expr, flat_index, isub
from backends.llvm.lower import POINTWISE
from backends.llvm.views import View, broadcast_view, cast, cmp, const, op, select


def pointwise(*names: str):
    def register(fn):
        for n in names:
            POINTWISE[n] = fn
        return fn
    return register


def elementwise(fn: Callable[..., Expr]) -> Callable:
    """A rule from fn(node, *operand elements) -> element, operands broadcast to the
    node's shape."""
    def rule(node: Node, views: list) -> View:
        shape = node.type.shape
        ins = [broadcast_view(v, shape) for v in views]
        return View(shape, node.type.dtype, lambda index: fn(node, *[v.at(index) for v in ins]))
    return rule


def _same(name: str) -> Callable:
    return elementwise(lambda node, *xs: op(name, *xs, dtype=node.type.dtype))


for _name in ("neg", "abs", "sign", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh",
              "sigmoid", "erf", "reciprocal", "log1p", "expm1", "floor", "ceil", "round",
              "add", "sub", "mul", "div", "floor_div", "mod", "pow", "maximum", "minimum"):
    POINTWISE[_name] = _same({"floor_div": "floordiv"}.get(_name, _name))

for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    POINTWISE[_name] = elementwise(lambda node, a, b, _n=_name: cmp(_n, a, b))

for _name, _op in (("logical_and", "and"), ("logical_or", "or"), ("logical_xor", "xor")):
    POINTWISE[_name] = elementwise(lambda node, a, b, _o=_op: op(_o, a, b))


@pointwise("logical_not")
def _logical_not(node, views):
    return elementwise(lambda n, x: op("not", x))(node, views)


@pointwise("stop_gradient")
def _identity(node, views):
    return views[0]


@pointwise("relu")
def _relu(node, views):
    return elementwise(lambda n, x: op("maximum", x, const(0, x.dtype)))(node, views)


@pointwise("leaky_relu")
def _leaky_relu(node, views):
    slope = node.attrs["negative_slope"]
    return elementwise(lambda n, x: select(cmp("gt", x, const(0, x.dtype)), x,
                                           op("mul", x, const(slope, x.dtype))))(node, views)


@pointwise("gelu")
def _gelu(node, views):
    name = "gelu_tanh" if node.attrs["approximate"] == "tanh" else "gelu_erf"
    return elementwise(lambda n, x: op(name, x))(node, views)


@pointwise("silu")
def _silu(node, views):
    return elementwise(lambda n, x: op("mul", x, op("sigmoid", x)))(node, views)


@pointwise("softplus")
def _softplus(node, views):
    attr = (node.attrs["beta"], node.attrs["threshold"])
    return elementwise(lambda n, x: op("softplus", x, attr=attr))(node, views)


@pointwise("where")
def _where(node, views):
    return elementwise(lambda n, c, a, b: select(c, a, b))(node, views)


@pointwise("cast")
def _cast(node, views):
    return elementwise(lambda n, x: cast(x, n.type.dtype))(node, views)


# -- sources -------------------------------------------------------------------------------------
@pointwise("full")
def _full(node, views):
    value = const(node.attrs["value"], node.type.dtype)
    return View(node.type.shape, node.type.dtype, lambda index: value)


@pointwise("arange")
def _arange(node, views):
    start, step, dtype = node.attrs["start"], node.attrs["step"], node.type.dtype

    def at(index):
        i = index[0]
        if dtype in ("int32", "int64"):  # exact integer arithmetic, as the reference
            return cast(op("add", Const(int(start)), op("mul", Const(int(step)), i)), dtype)
        # start + i * step in float64, rounded once
        wide = op("add", const(start, "float64"),
                  op("mul", const(step, "float64"), cast(i, "float64")))
        return cast(wide, dtype)
    return View(node.type.shape, dtype, at)


def _triangle(keep: str):
    def rule(node, views):
        (x,), k = views, node.attrs["k"]

        def at(index):
            offset = isub(index[-1], index[-2])  # j - i
            return select(cmp(keep, offset, Const(k)), x.at(index), const(0, x.dtype))
        return View(node.type.shape, node.type.dtype, at)
    return rule


POINTWISE["tril"] = _triangle("le")
POINTWISE["triu"] = _triangle("ge")


@pointwise("one_hot")
def _one_hot(node, views):
    (idx,), dtype = views, node.type.dtype

    def at(index):
        hit = cmp("eq", cast(idx.at(index[:-1]), INDEX), index[-1])
        return cast(hit, dtype)
    return View(node.type.shape, dtype, at)


# -- the counter-based RNG ---------------------------------------------------------------------
MIX = (0x7FEB352D, 0x846CA68B)
KEYS = (0x243F6A88, 0x85A308D3)


def _u32(value: int) -> Expr:
    """A 32-bit word as an int32 constant (the same bits)."""
    value &= 0xFFFFFFFF
    return Const(value - (1 << 32) if value >= 1 << 31 else value, "int32")


def _xor(a: Expr, b: Expr) -> Expr:
    return op("xor", a, b)


def _lshr(a: Expr, k: int) -> Expr:
    return op("lshr", a, Const(k, a.dtype))


def mix32(h: Expr) -> Expr:
    """The hash's mixer on uint32 words held in int32 (multiplies wrap the same)."""
    h = _xor(h, _lshr(h, 16))
    h = op("mul", h, _u32(MIX[0]))
    h = _xor(h, _lshr(h, 15))
    h = op("mul", h, _u32(MIX[1]))
    return _xor(h, _lshr(h, 16))


def stream_keys(seed: Expr, salt: int) -> tuple[Expr, Expr]:
    s0 = cast(seed, "int32")                     # the low word (truncation)
    s1 = cast(_lshr(seed, 32), "int32")          # the high word
    salt_w = _u32(salt)
    a = mix32(_xor(mix32(_xor(mix32(_xor(s0, _u32(KEYS[0]))), s1)), salt_w))
    b = mix32(_xor(mix32(_xor(mix32(_xor(s1, _u32(KEYS[1]))), salt_w)), s0))
    return a, b


def uniform_bits(counter: Expr, a: Expr, b: Expr) -> Expr:
    """hash(i) >> 8 for the counter i (an int64 index), as int32 in [0, 2**24)."""
    h = mix32(_xor(mix32(_xor(cast(counter, "int32"), a)), b))
    return _lshr(h, 8)


@pointwise("random_uniform")
def _random_uniform(node, views):
    (seed,), shape, dtype = views, node.type.shape, node.type.dtype
    salt = node.attrs["salt"]

    def at(index):
        a, b = stream_keys(seed.at([]), salt)
        bits = uniform_bits(flat_index(index, shape), a, b)
        return op("mul", cast(bits, dtype), const(2.0 ** -24, dtype))
    return View(shape, dtype, at)


SQRT2 = math.sqrt(2.0)
