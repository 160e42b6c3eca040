"""Lowerings of the elementwise ops: each builds a Triton expression from its operands.

`elementwise(fn)` turns `fn(node, *operand_vars) -> expression` into a lowering: the operands
are evaluated at the output index broadcast to their shapes, so NumPy broadcasting costs
nothing but index arithmetic. Half floats are float32 in registers; a cast to float16 rounds
there. Semantics follow the op table's numpy references (NaN propagation, floor division and
remainder signs, round half to even); functions beyond core tl ops come from mathlib.
"""
from __future__ import annotations

import math
from typing import Callable

from dlc.ir.graph import Node
from backends.triton.codegen.builder import (TL, KernelBuilder, broadcast_index, float_literal,
                                             is_float, reg_dtype)

ExprFn = Callable[..., str]


def operands(kb: KernelBuilder, node: Node, idx, mask) -> list[str]:
    """Every operand of node evaluated at the (broadcast) output index."""
    return [kb.value(v, broadcast_index(idx, node.shape, v.shape), mask) for v in node.inputs]


def elementwise(fn: ExprFn) -> Callable:
    """A lowering that evaluates every operand at the (broadcast) output index."""
    def lower(kb: KernelBuilder, node: Node, idx, mask) -> str:
        return kb.let(fn(node, *operands(kb, node, idx, mask)), "v")
    return lower


def logical(op: str) -> Callable:
    """logical_and/or/xor as `a op b`. A 0-d operand meeting a block is compared with 0
    first: the interpreter splats a 0-d comparison in its operands' dtype (float for
    `x > 0.5`), which `&` rejects; `!= 0` gives it an integer dtype that `&` accepts."""
    def lower(kb: KernelBuilder, node: Node, idx, mask) -> str:
        args = operands(kb, node, idx, mask)
        if any(kb.axes_of(a) for a in args):
            args = [a if kb.axes_of(a) else f"({a} != 0)" for a in args]
        return kb.let(f"{args[0]} {op} {args[1]}", "v")
    return lower


def _dt(node: Node, k: int = 0) -> str:
    """Register dtype of input k."""
    return reg_dtype(node.inputs[k].dtype)


def _out(node: Node) -> str:
    return reg_dtype(node.dtype)


def literal(value: float, dtype: str) -> str:
    """A typed scalar constant."""
    text = float_literal(value) if is_float(dtype) else str(int(value))
    return f"tl.full((), {text}, {TL[reg_dtype(dtype)]})"


def _f64_math(node: Node, f32: str, f64: str) -> str:
    return f64 if _dt(node) == "float64" else f32


# -- unary math --------------------------------------------------------------------------------
def _sign(node, a):
    if is_float(_dt(node)):
        return f"tl.where({a} > 0, 1.0, tl.where({a} < 0, -1.0, {a}))"
    t = TL[_dt(node)]
    return f"({a} > 0).to({t}) - ({a} < 0).to({t})"


def _relu(node, a):
    return f"tl.where({a} < 0, tl.zeros_like({a}), {a})"


def _gelu(node, a):
    if node.attrs["approximate"] == "tanh":
        inner = f"{math.sqrt(2 / math.pi)!r} * ({a} + 0.044715 * {a} * {a} * {a})"
        return f"0.5 * {a} * (1.0 + dlc_tanh({inner}))"
    if _dt(node) != "float64":
        return f"dlc_gelu32({a})"
    # 1 + erf(x/sqrt2) is erfc(-x/sqrt2): take erfc where it avoids the cancellation
    z = f"{a} * {1 / math.sqrt(2.0)!r}"
    return f"0.5 * {a} * tl.where({a} < 0, dlc_erfc64(-({z})), 1.0 + dlc_erf64({z}))"


def _softplus(node, a):
    beta, threshold = node.attrs["beta"], node.attrs["threshold"]
    z = f"({a} * {beta!r})"
    smooth = f"(tl.maximum({z}, 0.0) + dlc_log1p(tl.exp(-tl.abs({z})))) / {beta!r}"
    return f"tl.where({z} > {threshold!r}, {a}, {smooth})"


def _erf(node, a):
    return f"{_f64_math(node, 'dlc_erf32', 'dlc_erf64')}({a})"


UNARY: dict[str, ExprFn] = {
    "neg": lambda n, a: f"-{a}",
    "abs": lambda n, a: f"tl.abs({a})",
    "sign": _sign,
    "exp": lambda n, a: f"tl.exp({a})",
    "log": lambda n, a: f"tl.log({a})",
    "sqrt": lambda n, a: f"tl.sqrt({a})",
    "rsqrt": lambda n, a: f"1.0 / tl.sqrt({a})",
    "sin": lambda n, a: f"tl.sin({a})",
    "cos": lambda n, a: f"tl.cos({a})",
    "tanh": lambda n, a: f"dlc_tanh({a})",
    "sigmoid": lambda n, a: f"dlc_sigmoid({a})",
    "erf": _erf,
    "reciprocal": lambda n, a: f"1.0 / {a}",
    "log1p": lambda n, a: f"dlc_log1p({a})",
    "expm1": lambda n, a: f"dlc_expm1({a})",
    "floor": lambda n, a: f"tl.floor({a})",
    "ceil": lambda n, a: f"tl.ceil({a})",
    "round": lambda n, a: f"dlc_round_even({a})",
    "relu": _relu,
    "leaky_relu": lambda n, a: f"tl.where({a} > 0, {a}, {a} * {n.attrs['negative_slope']!r})",
    "gelu": _gelu,
    "silu": lambda n, a: f"{a} * dlc_sigmoid({a})",
    "softplus": _softplus,
    "logical_not": lambda n, a: f"{a} == 0",
    "stop_gradient": lambda n, a: a,
}


# -- binary arithmetic and comparisons -------------------------------------------------------
def _by_kind(float_fn: str, int_fn: str) -> ExprFn:
    def fn(node, a, b):
        return f"{float_fn if is_float(_dt(node)) else int_fn}({a}, {b})"
    return fn


def _extremum(float_fn: str, int_fn: str) -> ExprFn:
    def fn(node, a, b):
        if is_float(_dt(node)):
            return f"{float_fn}({a}, {b})"
        return f"{int_fn}({a}, {b})"
    return fn


def _compare(op: str) -> ExprFn:
    def fn(node, a, b):
        if _dt(node) == "bool" and op not in ("==", "!="):
            # int1 compares as a signed 1-bit integer (true is -1): widen first
            a, b = f"{a}.to(tl.int32)", f"{b}.to(tl.int32)"
        return f"{a} {op} {b}"
    return fn


BINARY: dict[str, ExprFn] = {
    "add": lambda n, a, b: f"{a} + {b}",
    "sub": lambda n, a, b: f"{a} - {b}",
    "mul": lambda n, a, b: f"{a} * {b}",
    "div": lambda n, a, b: f"{a} / {b}",
    "floor_div": _by_kind("dlc_floor_div_float", "dlc_floor_div_int"),
    "mod": _by_kind("dlc_mod_float", "dlc_mod_int"),
    "pow": lambda n, a, b: f"dlc_pow({a}, {b})",
    # the accumulator form keeps a NaN in either operand
    "maximum": _extremum("dlc_max_nan", "tl.maximum"),
    "minimum": _extremum("dlc_min_nan", "tl.minimum"),
    "eq": _compare("=="), "ne": _compare("!="), "lt": _compare("<"), "le": _compare("<="),
    "gt": _compare(">"), "ge": _compare(">="),
}


def _where(node, c, a, b):
    return f"tl.where({c}, {a}, {b})"


def _cast(node, a):
    src, dst = node.inputs[0].dtype, node.attrs["dtype"]
    if dst == "bool":
        return f"{a} != 0"
    if reg_dtype(src) == reg_dtype(dst) and dst == reg_dtype(dst):
        return a  # float16 -> float32 (same registers), or a no-op cast
    out = f"{a}.to({TL[dst]})"
    if dst != reg_dtype(dst):  # to float16: round, then keep computing in float32
        out += f".to({TL[reg_dtype(dst)]})"
    return out


TERNARY: dict[str, ExprFn] = {"where": _where, "cast": _cast}

LOWERING = {name: elementwise(fn) for table in (UNARY, BINARY, TERNARY)
            for name, fn in table.items()}
LOWERING.update(logical_and=logical("&"), logical_or=logical("|"), logical_xor=logical("^"))
