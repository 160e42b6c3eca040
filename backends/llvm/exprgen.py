"""Expressions of the loop-nest IR to LLVM values, on one element or on a vector of lanes.

`Eval` evaluates an expression in the current loop context. Inside a vector loop the loop
variable stands for `lanes` consecutive values; a subexpression that does not depend on it
stays a scalar (computed once, splatted where it meets a vector). A load whose index moves
by 1 per lane becomes one vector load, one that does not move a scalar load, any other a
gather. Results are memoized per loop scope, so a repeated subexpression is computed once.

OPS is the operation table: op name -> emitter(ev, node, args) -> value.
"""
from __future__ import annotations

import math
from typing import Callable

import llvmlite.ir as ir

from dlc.errors import DlcError
from backends.llvm import mathlib as ML
from backends.llvm.irutil import (I1, I8, I32, I64, IR, ITEMSIZE, MEMORY, PTR, SCALAR,
                                  element_of, lanes_of, with_lanes)
from backends.llvm.loops import Const, Expr, Load, Op, Ref, Var, stride_along


class Eval:
    """Evaluates expressions with the builder at its current position.

    ptrs: Buffer -> pointer value. vector_var/lanes: the vector loop variable (or None) and
    how many consecutive values it stands for. vars: loop variable -> scalar i64 value
    (for the vector variable: its first lane)."""

    def __init__(self, m: IR, ptrs: dict):
        self.m, self.b = m, m.b
        self.ptrs = ptrs
        self.vars: dict[str, ir.Value] = {}
        self.refs: dict[str, ir.Value] = {}
        self.vector_var: str | None = None
        self.lanes = 1
        self.scopes: list[dict] = [{}]
        self.stored: set = set()  # buffers written by this kernel: their loads are not reused

    # -- scopes ---------------------------------------------------------------------------
    def push(self) -> None:
        self.scopes.append({})

    def pop(self) -> None:
        self.scopes.pop()

    def _memo_get(self, key):
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        return None

    # -- evaluation -----------------------------------------------------------------------
    def __call__(self, e: Expr, base: bool = False) -> ir.Value:
        """The value of e; base=True evaluates with the vector variable at its first lane."""
        vec = self.vector_var is not None and not base and self.vector_var in e.vars
        key = (id(e), vec)
        cacheable = not (isinstance(e, Load) and e.buf in self.stored)
        if cacheable:
            hit = self._memo_get(key)
            if hit is not None:
                return hit
        out = self._eval(e, vec, base)
        if cacheable:
            self.scopes[-1][key] = out
        return out

    def _eval(self, e: Expr, vec: bool, base: bool) -> ir.Value:
        if isinstance(e, Const):
            return self.m.const(SCALAR[e.dtype], e.value)
        if isinstance(e, Var):
            if vec:
                first = self.vars[e.name]
                return self.b.add(self.m.splat(first, self.lanes),
                                  self.m.iota(I64, self.lanes))
            if e.name not in self.vars:
                raise DlcError(f"internal: loop variable {e.name} is not bound")
            return self.vars[e.name]
        if isinstance(e, Ref):
            return self.refs[e.name]
        if isinstance(e, Load):
            return self.load(e, vec, base)
        if isinstance(e, Op):
            args = [self(a, base) for a in e.args]
            lanes = max(lanes_of(a.type) for a in args) if args else 1
            if lanes > 1 and e.op == "div" and isinstance(e.args[1], Ref) and \
                    lanes_of(args[1].type) == 1:
                return self._div_by_uniform(args)
            if lanes > 1:
                args = [self.m.splat(a, lanes) for a in args]
            emit = OPS.get(e.op)
            if emit is None:
                raise DlcError(f"internal: no code generator for operation {e.op!r}")
            return emit(self, e, args)
        raise DlcError(f"internal: cannot evaluate {e!r}")

    def _div_by_uniform(self, args) -> ir.Value:
        """A vector divided by a row statistic (a Let/Reduce result: a softmax sum, a
        norm): a multiplication by its reciprocal, computed once per row; at most 1 ulp
        from the quotient (and infinite where the divisor is below 1 / max_float)."""
        x, d = args
        r = self.b.fdiv(self.m.like(d, 1.0), d)
        return self.b.fmul(x, self.m.splat(r, lanes_of(x.type)))

    # -- memory ---------------------------------------------------------------------------
    def address(self, buf, index: ir.Value) -> ir.Value:
        return self.b.gep(self.ptrs[buf], [index], source_etype=MEMORY[buf.dtype])

    def load(self, e: Load, vec: bool, base: bool) -> ir.Value:
        buf = e.buf
        mem = MEMORY[buf.dtype]
        if not vec:
            v = self.b.load(self.address(buf, self(e.index, base)), typ=mem,
                            align=ITEMSIZE[buf.dtype])
            return self._from_memory(v, buf.dtype)
        stride = stride_along(e.index, self.vector_var)
        if stride == 1:
            first = self(e.index, base=True)
            vt = ir.VectorType(mem, self.lanes)
            v = self.b.load(self.address(buf, first), typ=vt, align=ITEMSIZE[buf.dtype])
            return self._from_memory(v, buf.dtype)
        if stride in SHUFFLED_STRIDES and buf.dtype in ("float32", "float64"):
            return self._strided(buf, self(e.index, base=True), stride)
        return self.gather(buf, self(e.index))

    def _strided(self, buf, first: ir.Value, stride: int) -> ir.Value:
        """Lanes `stride` elements apart: one masked load of the span they cover (the lanes
        past the last element are off, so nothing past it is touched) and a shuffle that
        keeps every stride-th element. A pool's stride-2 window reads two vectors and one
        two-source permute instead of a gather per lane."""
        mem = MEMORY[buf.dtype]
        span = (self.lanes - 1) * stride + 1
        wide = ir.VectorType(mem, self.lanes * stride)
        mask = ir.Constant(ir.VectorType(I1, self.lanes * stride),
                           [I1(int(i < span)) for i in range(self.lanes * stride)])
        v = self.m.intrinsic("masked.load", wide,
                             [self.address(buf, first), I32(ITEMSIZE[buf.dtype]), mask,
                              ir.Constant(wide, ir.Undefined)],
                             overload=[wide, PTR])
        picks = ir.Constant(ir.VectorType(I32, self.lanes),
                            [I32(i * stride) for i in range(self.lanes)])
        return self.b.shuffle_vector(v, ir.Constant(wide, ir.Undefined), picks)

    def gather(self, buf, index_vec: ir.Value) -> ir.Value:
        mem = MEMORY[buf.dtype]
        lanes = lanes_of(index_vec.type)
        size = ITEMSIZE[buf.dtype]
        base = self.b.ptrtoint(self.ptrs[buf], I64)
        addr = self.b.add(self.m.splat(base, lanes),
                          self.b.mul(index_vec, self.m.const(index_vec.type, size)))
        pv = self.b.inttoptr(addr, ir.VectorType(PTR, lanes))
        vt = ir.VectorType(mem, lanes)
        mask = ir.Constant(ir.VectorType(I1, lanes), [I1(1)] * lanes)
        v = self.m.intrinsic("masked.gather", vt,
                             [pv, I32(size), mask, ir.Constant(vt, ir.Undefined)],
                             overload=[vt, pv.type])
        return self._from_memory(v, buf.dtype)

    def _from_memory(self, v: ir.Value, dtype: str) -> ir.Value:
        if dtype == "bool":
            return self.b.icmp_unsigned("!=", v, self.m.like(v, 0))
        return v

    def to_memory(self, v: ir.Value, dtype: str) -> ir.Value:
        if dtype == "bool":
            return self.b.zext(v, with_lanes(I8, lanes_of(v.type)))
        return v

    def store(self, buf, index: Expr, value: ir.Value, nontemporal: bool = False) -> None:
        """buf[index] = value, in the current lane context."""
        v = self.to_memory(value, buf.dtype)
        size = ITEMSIZE[buf.dtype]
        varying = self.vector_var is not None and self.vector_var in index.vars
        if not varying:
            if isinstance(v.type, ir.VectorType):
                raise DlcError("internal: a vector value stored to one address")
            self.b.store(v, self.address(buf, self(index)), align=size)
            return
        v = self.m.splat(v, self.lanes)
        if stride_along(index, self.vector_var) == 1:
            # a non-temporal store is only made at addresses the caller aligned to 64
            st = self.b.store(v, self.address(buf, self(index, base=True)),
                              align=64 if nontemporal else size)
            if nontemporal:
                st.set_metadata("nontemporal", self.m.module.add_metadata([I32(1)]))
            return
        idx = self(index)
        for lane in range(self.lanes):
            i = self.b.extract_element(idx, I32(lane))
            self.b.store(self.b.extract_element(v, I32(lane)), self.address(buf, i),
                         align=size)


# -- the operation table -----------------------------------------------------------------------
Emitter = Callable[[Eval, Op, list], ir.Value]
OPS: dict[str, Emitter] = {}


def op(*names: str):
    def register(fn: Emitter) -> Emitter:
        for n in names:
            OPS[n] = fn
        return fn
    return register


def _is_float(e: Expr) -> bool:
    return e.dtype in ("float32", "float64")


@op("add")
def _add(ev, e, a):
    return ev.b.fadd(*a) if _is_float(e) else _int_sum(ev, a)


def _int_sum(ev, a):
    out = a[0]
    for x in a[1:]:
        out = ev.b.add(out, x)
    return out


@op("sub")
def _sub(ev, e, a):
    return ev.b.fsub(*a) if _is_float(e) else ev.b.sub(*a)


@op("mul")
def _mul(ev, e, a):
    return ev.b.fmul(*a) if _is_float(e) else ev.b.mul(*a)


@op("div")
def _div(ev, e, a):
    return ev.b.fdiv(*a)


@op("neg")
def _neg(ev, e, a):
    return ev.b.fneg(a[0]) if _is_float(e) else ev.b.sub(ev.m.like(a[0], 0), a[0])


@op("abs")
def _abs(ev, e, a):
    if _is_float(e):
        return ev.m.fabs(a[0])
    x = a[0]
    return ev.b.select(ev.b.icmp_signed("<", x, ev.m.like(x, 0)),
                       ev.b.sub(ev.m.like(x, 0), x), x)


@op("sign")
def _sign(ev, e, a):
    x, m, b = a[0], ev.m, ev.b
    if _is_float(e):
        out = b.select(b.fcmp_ordered(">", x, m.like(x, 0.0)), m.like(x, 1.0), x)
        return b.select(b.fcmp_ordered("<", x, m.like(x, 0.0)), m.like(x, -1.0), out)
    out = b.select(b.icmp_signed(">", x, m.like(x, 0)), m.like(x, 1), m.like(x, 0))
    return b.select(b.icmp_signed("<", x, m.like(x, 0)), m.like(x, -1), out)


@op("maximum", "minimum")
def _minmax(ev, e, a):
    x, y = a
    big = e.op == "maximum"
    if _is_float(e):
        return ev.m.fmax_nan(x, y) if big else ev.m.fmin_nan(x, y)
    if e.dtype == "bool":
        return ev.b.or_(x, y) if big else ev.b.and_(x, y)
    return ev.b.select(ev.b.icmp_signed(">" if big else "<", x, y), x, y)


# vector loads with these constant strides read their span and shuffle (see _strided)
SHUFFLED_STRIDES = (2, 3, 4)
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


@op(*_CMP)
def _compare(ev, e, a):
    x, y = a
    pred = _CMP[e.op]
    src = e.args[0].dtype
    if src in ("float32", "float64"):
        if e.op == "ne":
            return ev.b.fcmp_unordered("!=", x, y)
        return ev.b.fcmp_ordered(pred, x, y)
    if src == "bool":
        return ev.b.icmp_unsigned(pred, x, y)
    return ev.b.icmp_signed(pred, x, y)


@op("and", "or", "xor")
def _logic(ev, e, a):
    fn = {"and": ev.b.and_, "or": ev.b.or_, "xor": ev.b.xor}[e.op]
    return fn(*a)


@op("not")
def _not(ev, e, a):
    return ev.b.not_(a[0])


@op("shl", "lshr")
def _shift(ev, e, a):
    return (ev.b.shl if e.op == "shl" else ev.b.lshr)(*a)


@op("select")
def _select(ev, e, a):
    c, x, y = a
    lanes = max(lanes_of(v.type) for v in a)
    return ev.b.select(ev.m.splat(c, lanes), ev.m.splat(x, lanes), ev.m.splat(y, lanes))


@op("cast")
def _cast(ev, e, a):
    return cast(ev.m, a[0], e.args[0].dtype, e.dtype)


def cast(m: IR, x: ir.Value, src: str, dst: str) -> ir.Value:
    """numpy's astype between float32/64, int32/64 and bool (float -> int truncates and
    saturates; NaN gives 0)."""
    b = m.b
    lanes = lanes_of(x.type)
    t = with_lanes(SCALAR[dst], lanes)
    if src == dst:
        return x
    sf, df = src.startswith("float"), dst.startswith("float")
    if dst == "bool":
        if sf:
            return b.fcmp_unordered("!=", x, m.like(x, 0.0))
        return b.icmp_unsigned("!=", x, m.like(x, 0))
    if src == "bool":
        return b.uitofp(x, t) if df else b.zext(x, t)
    if sf and df:
        return b.fpext(x, t) if ITEMSIZE[dst] > ITEMSIZE[src] else b.fptrunc(x, t)
    if sf:
        return m.intrinsic("fptosi.sat", t, [x], overload=[t, x.type])
    if df:
        return b.sitofp(x, t)
    return b.sext(x, t) if ITEMSIZE[dst] > ITEMSIZE[src] else b.trunc(x, t)


# -- integer and float division with numpy's rules ---------------------------------------------
@op("floordiv")
def _floordiv(ev, e, a):
    x, y = a
    if _is_float(e):
        return _float_floordiv(ev.m, x, y)
    return _int_divmod(ev.m, x, y)[0]


@op("mod")
def _mod(ev, e, a):
    x, y = a
    if _is_float(e):
        return _float_mod(ev.m, x, y)
    return _int_divmod(ev.m, x, y)[1]


@op("ifloordiv", "imod")
def _index_divmod(ev, e, a):
    """Division of an index by a positive constant, rounding toward -inf."""
    x, k = a
    b, m = ev.b, ev.m
    q, r = b.sdiv(x, k), b.srem(x, k)
    neg = b.icmp_signed("<", r, m.like(r, 0))
    if e.op == "ifloordiv":
        return b.sub(q, b.zext(neg, x.type))
    return b.select(neg, b.add(r, k), r)


def _int_divmod(m: IR, x, y):
    """numpy's floor_divide and mod for ints: division by 0 gives 0, MIN // -1 wraps."""
    b = m.b
    zero, one = m.like(y, 0), m.like(y, 1)
    bad = b.or_(b.icmp_signed("==", y, zero), b.icmp_signed("==", y, m.like(y, -1)))
    safe = b.select(bad, one, y)
    q, r = b.sdiv(x, safe), b.srem(x, safe)
    adjust = b.and_(b.icmp_signed("!=", r, zero),
                    b.icmp_signed("!=", b.icmp_signed("<", r, zero),
                                  b.icmp_signed("<", safe, zero)))
    q = b.sub(q, b.zext(adjust, q.type))
    r = b.select(adjust, b.add(r, safe), r)
    minus_one = b.icmp_signed("==", y, m.like(y, -1))
    q = b.select(minus_one, b.sub(zero, x), b.select(b.icmp_signed("==", y, zero), zero, q))
    r = b.select(bad, zero, r)
    return q, r


def _float_mod(m: IR, x, y):
    """numpy's float mod: fmod, moved to the divisor's sign; a zero keeps y's sign."""
    b = m.b
    r = b.frem(x, y)
    zero = m.like(r, 0.0)
    nonzero = b.fcmp_ordered("!=", r, zero)
    differ = b.icmp_unsigned("!=", b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", r, zero))
    r = b.select(b.and_(nonzero, differ), b.fadd(r, y), r)
    return b.select(nonzero, r, m.copysign(zero, y))


def _float_floordiv(m: IR, x, y):
    """numpy's float floor_divide: (x - fmod(x, y)) / y, corrected (npy_divmod)."""
    b = m.b
    zero = m.like(x, 0.0)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    fix = b.and_(b.fcmp_ordered("!=", mod, zero),
                 b.icmp_unsigned("!=", b.fcmp_ordered("<", y, zero),
                                 b.fcmp_ordered("<", mod, zero)))
    div = b.select(fix, b.fsub(div, m.like(div, 1.0)), div)
    floor = m.floor(div)
    floor = b.select(b.fcmp_ordered(">", b.fsub(div, floor), m.like(div, 0.5)),
                     b.fadd(floor, m.like(div, 1.0)), floor)
    # div == 0: the result is a zero with the sign of x / y
    quotient = b.fdiv(x, y)
    out = b.select(b.fcmp_ordered("==", div, zero), m.copysign(zero, quotient), floor)
    # y == 0: x / y (inf or NaN), as numpy
    return b.select(b.fcmp_ordered("==", y, zero), quotient, out)


# -- math --------------------------------------------------------------------------------------
def _math(fn):
    return lambda ev, e, a: fn(ev.m, *a)


for _name in ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "erfc", "sin", "cos",
              "pow", "gelu_erf", "gelu_tanh"):
    OPS[_name] = _math(getattr(ML, _name))


@op("pow")
def _pow(ev, e, a):
    """x ** 2 (a variance, a squared error) is x * x: the one rounding of the exact square,
    which is what a correctly rounded pow gives too, for every x."""
    exponent = e.args[1]
    if isinstance(exponent, Const) and exponent.value == 2.0 and e.dtype.startswith("float"):
        x = ev.m.splat(a[0], max(lanes_of(a[0].type), lanes_of(a[1].type)))
        return ev.b.fmul(x, x)
    return ML.pow(ev.m, *a)


@op("sqrt")
def _sqrt(ev, e, a):
    return ev.m.sqrt(a[0])


@op("rsqrt")
def _rsqrt(ev, e, a):
    return ev.b.fdiv(ev.m.like(a[0], 1.0), ev.m.sqrt(a[0]))


@op("reciprocal")
def _reciprocal(ev, e, a):
    return ev.b.fdiv(ev.m.like(a[0], 1.0), a[0])


@op("floor", "ceil", "round")
def _rounding(ev, e, a):
    name = {"floor": "floor", "ceil": "ceil", "round": "roundeven"}[e.op]
    return ev.m.unary_intrinsic(name, a[0])


@op("softplus")
def _softplus(ev, e, a):
    beta, threshold = e.attr
    return ML.softplus(ev.m, a[0], beta, threshold)


@op("isnan")
def _isnan(ev, e, a):
    return ev.m.isnan(a[0])


@op("signbit")
def _signbit(ev, e, a):
    x = a[0]
    it = with_lanes(ir.IntType(32 if isinstance(element_of(x.type), ir.FloatType) else 64),
                    lanes_of(x.type))
    return ev.b.icmp_signed("<", ev.b.bitcast(x, it), ev.m.const(it, 0))


def uses_math(e: Expr) -> bool:
    return isinstance(e, Op) and e.op in MATH_OPS


MATH_OPS = {"exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "erfc", "sin", "cos",
            "pow", "gelu_erf", "gelu_tanh", "softplus"}
NAN = math.nan
