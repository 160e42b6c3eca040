"""KernelBuilder: writes the body of one @triton.jit function, a value at a time.

Code generation is evaluation with index math: `kb.value(v, idx, mask)` returns the name of
a Triton variable holding value `v` at the multi-index `idx` (one expression per axis of v,
each a Triton tensor broadcastable to the kernel's tile) for the lanes in `mask`. Graph
inputs of the kernel become masked loads; every other node asks its lowering (a table keyed
by op name) to compute it from its inputs at the index it needs, so movement ops are index
arithmetic and broadcasting is "index 0 on size-1 axes". Results are memoized per
(value, index, mask) within a scope: a loop body opens a scope, so nothing computed inside a
loop is reused after it.

A node that cannot be part of the kernel being generated (a reduction over another axis, a
second matmul, a value needed at an index the kernel does not iterate) raises Conflict; the
planner then gives that value a buffer of its own and generates again.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from contextlib import contextmanager
from typing import Callable, Iterator

from dlc.ir.graph import Node, Value

TL = {"float16": "tl.float16", "bfloat16": "tl.bfloat16", "float32": "tl.float32",
      "float64": "tl.float64", "int32": "tl.int32", "int64": "tl.int64", "bool": "tl.int1"}
INT32_LIMIT = 2 ** 31 - 1


class Conflict(Exception):
    """`value` cannot be computed inside the kernel being generated."""

    def __init__(self, value: Value, why: str = ""):
        super().__init__(why)
        self.value = value


def reg_dtype(dtype: str) -> str:
    """The dtype a value has in registers: half floats compute in float32."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def is_float(dtype: str) -> bool:
    return dtype in ("float16", "bfloat16", "float32", "float64")


def is_literal(expr: str) -> bool:
    return expr.lstrip("-").isdigit()


def is_atom(expr: str) -> bool:
    return expr.isidentifier() or is_literal(expr)


_TOKEN = re.compile(r"[A-Za-z_]\w*")
# names read by an expression: not keyword-argument names (mask=...), not attributes
_READ = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?!\w)(?!\s*=(?!=))")
_ARITHMETIC = re.compile(r"[\d\s+\-*/%()]+")
_FOLD = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
         ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def fold_constant(expr: str) -> str | None:
    """The value of an integer expression of literals (index arithmetic), else None."""
    if not _ARITHMETIC.fullmatch(expr):
        return None

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
            return _FOLD[type(node.op)](value(node.left), value(node.right))
        raise ValueError(expr)
    try:
        return str(value(ast.parse(expr, mode="eval").body))
    except (ValueError, SyntaxError, ZeroDivisionError):
        return None


def strides(shape: tuple[int, ...]) -> list[int]:
    out, step = [], 1
    for size in reversed(shape):
        out.append(step)
        step *= size
    return out[::-1]


def float_literal(value: float) -> str:
    if math.isnan(value):
        return 'float("nan")'
    if math.isinf(value):
        return 'float("inf")' if value > 0 else 'float("-inf")'
    return repr(float(value))


class Line:
    """One line of a kernel body. `pure`: `var = expr` with no effect (dead if var is
    unused); `hoist`: loop-invariant code motion may move it out of a loop."""
    __slots__ = ("depth", "text", "pure", "hoist")

    def __init__(self, depth: int, text: str, pure: bool = False, hoist: bool = False):
        self.depth, self.text, self.pure, self.hoist = depth, text, pure, hoist or pure

    def sides(self) -> tuple[list[str], str]:
        """(names it binds, the text it reads)."""
        if self.text.startswith("for "):
            return [self.text[4:].split(" in ")[0].strip()], self.text.split(" in ", 1)[1]
        lhs, eq, rhs = self.text.partition(" = ")
        if eq and all(n.strip().isidentifier() for n in lhs.split(",")):
            return [n.strip() for n in lhs.split(",")], rhs
        return [], self.text


class KernelBuilder:
    """The lines of one kernel body and the memo of values computed so far."""

    def __init__(self, lowering: dict[str, Callable], args: dict[Value, "Param"],
                 context: "KernelContext", sites: list, check_indices: bool = True):
        self.lowering = lowering
        self.args = args
        self.context = context
        self.lines: list[Line] = []
        self.depth = 1
        self.scopes: list[dict] = [{}]
        self.count = 0
        self.sites = sites          # the program's checked index sites (IndexSite), shared
        self.check_indices = check_indices
        self.error_used = False
        self.used: set[str] = set()   # parameters the kernel reads
        # the tile axes each variable varies along (0: rows / the block, 1: columns), so
        # that a pointer is broadcast to its mask's shape when it varies along fewer
        self.axes: dict[str, frozenset] = {}

    def new_site(self, site) -> int:
        """Register a checked index; the kernel then takes the error buffer `err`."""
        self.sites.append(site)
        self.error_used = True
        return len(self.sites) - 1

    # -- text ------------------------------------------------------------------------------
    def line(self, text: str, pure: bool = False, hoist: bool = False) -> None:
        self.lines.append(Line(self.depth, text, pure, hoist))

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def lookup(self, key):
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        return None

    def remember(self, key, var: str) -> None:
        self.scopes[-1][key] = var

    def let(self, expr: str, prefix: str = "t", axes=None) -> str:
        """Bind `expr` to a variable (common subexpressions share one). `axes` overrides the
        tile axes the variable varies along (reductions drop one)."""
        folded = fold_constant(expr)
        if folded is not None:
            return folded
        if is_atom(expr):
            return expr
        key = ("expr", expr)
        hit = self.lookup(key)
        if hit is not None:
            return hit
        var = self.fresh(prefix)
        self.line(f"{var} = {expr}", pure=True)
        self.remember(key, var)
        self.axes[var] = frozenset(axes) if axes is not None else self.axes_of(expr)
        return var

    def assign(self, var: str, expr: str, axes=None) -> None:
        """Rebind a loop-carried variable (never memoized)."""
        self.line(f"{var} = {expr}")
        self.axes[var] = frozenset(axes) if axes is not None else \
            self.axes.get(var, frozenset()) | self.axes_of(expr)

    def declare(self, var: str, axes) -> None:
        self.axes[var] = frozenset(axes)

    def axes_of(self, expr: str) -> frozenset:
        out = frozenset()
        for token in _READ.findall(expr):
            out |= self.axes.get(token, frozenset())
        return out

    def pointer(self, ptr: str, mask: str | None) -> tuple[str, str | None]:
        """ptr and mask broadcast to one shape (tl.load and tl.store need the pointer to
        have the mask's shape)."""
        if mask is None or self.axes_of(mask) <= self.axes_of(ptr):
            return ptr, mask
        p, m = self.fresh("p"), self.fresh("m")
        self.line(f"{p}, {m} = tl.broadcast({ptr}, {mask})", hoist=True)
        self.axes[p] = self.axes[m] = self.axes_of(ptr) | self.axes_of(mask)
        return p, m

    def store(self, ptr: str, val: str, mask: str | None) -> None:
        p, m = self.pointer(ptr, mask)
        if not self.axes_of(val) <= self.axes_of(p):  # a value varying where ptr does not
            q = self.fresh("p")
            self.line(f"{q} = tl.broadcast({p}, {val})[0]", pure=True)
            self.axes[q] = self.axes_of(p) | self.axes_of(val)
            p = q
        self.line(f"tl.store({p}, {val}" + (f", mask={m})" if m else ")"))

    @contextmanager
    def loop(self, header: str) -> Iterator[None]:
        self.line(header)
        start = len(self.lines)
        self.depth += 1
        self.scopes.append({})
        try:
            yield
        finally:
            self.scopes.pop()
            self.depth -= 1
        self._hoist(start)

    def _hoist(self, start: int) -> None:
        """Move the loop's invariant bindings (index arithmetic of the outer tile, loads of
        values that do not depend on the loop variable) before its header."""
        header, body = self.lines[start - 1], self.lines[start:]
        variant = set(header.sides()[0])
        for ln in body:
            if not (ln.hoist and ln.depth == header.depth + 1):
                variant.update(ln.sides()[0])
        hoisted, kept = [], []
        for ln in body:
            names, reads = ln.sides()
            if ln.hoist and ln.depth == header.depth + 1 and \
                    not variant & set(_TOKEN.findall(reads)):
                hoisted.append(Line(header.depth, ln.text, ln.pure, True))
            else:
                variant.update(names)
                kept.append(ln)
        self.lines[start - 1:] = hoisted + [header] + kept

    def body(self) -> list[str]:
        """The kernel's lines without the bindings nothing reads (index variables computed
        for a shape that ended up unused, say)."""
        keep = [True] * len(self.lines)
        used: set[str] = set()
        for k in range(len(self.lines) - 1, -1, -1):
            ln = self.lines[k]
            names, reads = ln.sides()
            if ln.pure and not used & set(names):
                keep[k] = False
                continue
            used.update(_TOKEN.findall(reads))
        return ["    " * ln.depth + ln.text for ln, k in zip(self.lines, keep) if k]

    # -- values ----------------------------------------------------------------------------
    def value(self, v: Value, idx, mask: str | None) -> str:
        """Variable holding v at multi-index idx, valid in the lanes of mask."""
        idx = tuple(idx)
        if len(idx) != len(v.shape):
            raise AssertionError(f"index {idx} for a value of shape {v.shape}")
        key = ("val", id(v), idx, mask)
        hit = self.lookup(key)
        if hit is not None:
            return hit
        if v in self.args:
            out = self.load(self.args[v], idx, mask)
        elif isinstance(v, Node):
            out = self.lowering[v.op.name](self, v, idx, mask)
        else:
            raise AssertionError(f"value {v} is neither a kernel argument nor a node")
        self.remember(key, out)
        return out

    def load(self, param: "Param", idx, mask: str | None, raw: bool = False) -> str:
        """param at idx; in register dtype, or (raw) in its storage dtype."""
        self.used.add(param.name)
        off = self.linearize(idx, param.shape)
        ptr = param.name if off == "0" else f"{param.name} + {off}"
        if is_literal(off) or mask is None:
            expr = f"tl.load({ptr})"
        elif not self.axes_of(mask):
            # a uniform (0-d) condition: load element 0 where it is false instead of
            # masking (the interpreter cannot broadcast a 0-d mask); every caller of such
            # a load selects the fill value there with tl.where
            expr = f"tl.load({param.name} + tl.where({mask}, {off}, 0))"
        else:
            ptr, mask = self.pointer(ptr, mask)
            expr = f"tl.load({ptr}, mask={mask}, other=0)"
        reg = reg_dtype(param.dtype)
        if reg != param.dtype and not raw:
            expr += f".to({TL[reg]})"
        return self.let(expr, "x")

    # -- index arithmetic ------------------------------------------------------------------
    def add(self, a: str, b: str) -> str:
        if a == "0":
            return b
        if b == "0":
            return a
        if is_literal(a) and is_literal(b):
            return str(int(a) + int(b))
        if is_literal(b) and b.startswith("-"):
            return self.let(f"{a} - {b[1:]}", "i")
        return self.let(f"{a} + {b}", "i")

    def sub(self, a: str, b: str) -> str:
        if is_literal(b):
            return self.add(a, str(-int(b)))
        return self.let(f"{a} - {b}", "i")

    def mul(self, a: str, k: int) -> str:
        if k == 0 or a == "0":
            return "0"
        if k == 1:
            return a
        if is_literal(a):
            return str(int(a) * k)
        return self.let(f"{a} * {k}", "i")

    def div(self, a: str, k: int) -> str:
        """a // k for a >= 0 (index arithmetic is on non-negative indices)."""
        if k == 1 or a == "0":
            return a
        if is_literal(a):
            return str(int(a) // k)
        return self.let(f"{a} // {k}", "i")

    def mod(self, a: str, k: int) -> str:
        if k == 1:
            return "0"
        if is_literal(a):
            return str(int(a) % k)
        return self.let(f"{a} % {k}", "i")

    def delinearize(self, flat: str, shape: tuple[int, ...]) -> tuple[str, ...]:
        """The row-major multi-index of flat position `flat` in `shape`."""
        out = []
        first = next((d for d, s in enumerate(shape) if s != 1), None)
        for d, (size, stride) in enumerate(zip(shape, strides(shape))):
            if size == 1:
                out.append("0")
                continue
            e = self.div(flat, stride)
            out.append(e if d == first else self.mod(e, size))
        idx = tuple(out)
        self.remember(("lin", idx, tuple(shape)), flat)
        return idx

    def linearize(self, idx, shape: tuple[int, ...]) -> str:
        """The flat row-major position of multi-index idx in `shape`."""
        idx = tuple(idx)
        hit = self.lookup(("lin", idx, tuple(shape)))
        if hit is not None:
            return hit
        total = "0"
        for i, size, stride in zip(idx, shape, strides(shape)):
            if size != 1:
                total = self.add(total, self.mul(i, stride))
        return total

    def both(self, a: str | None, b: str | None) -> str | None:
        """The conjunction of two masks (None is 'all lanes')."""
        if a is None or a == b:
            return b
        if b is None:
            return a
        return self.conj([a, b])

    def conj(self, parts: list[str]) -> str | None:
        """The conjunction of boolean expressions (atoms or parenthesized)."""
        parts = [p for p in parts if p is not None]
        if len(parts) <= 1:
            return parts[0] if parts else None
        expr = " & ".join(parts)
        if any(not self.axes_of(p) for p in parts):
            # the interpreter widens a 0-d bool combined with anything to int32, which no
            # load accepts as a mask: compare with 0 to get a bool back
            expr = f"({expr}) != 0"
        return self.let(expr, "m")


class Param:
    """A pointer parameter of the kernel: its name, storage dtype and shape."""

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...]):
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)


class KernelContext:
    """What the kernel being generated provides to lowerings of reductions and contractions.

    The default refuses both: a pointwise kernel computes neither."""

    def reduction(self, kb: KernelBuilder, node: Node, idx, mask) -> str:
        raise Conflict(node, "a reduction outside a row kernel")

    def contraction(self, kb: KernelBuilder, node: Node, idx, mask) -> str:
        raise Conflict(node, "a contraction outside its own kernel")


def broadcast_index(idx, out_shape, in_shape) -> tuple[str, ...]:
    """The index of an operand of shape in_shape broadcast (NumPy rules) to out_shape."""
    lead = len(out_shape) - len(in_shape)
    return tuple("0" if size == 1 else idx[lead + d] for d, size in enumerate(in_shape))


def next_pow2(n: int) -> int:
    return 1 << max(0, (max(n, 1) - 1).bit_length())
