"""Typed llvmlite helpers shared by the code generator, the math library and the GEMM.

`IR` wraps an IRBuilder and the module: constants, intrinsics and arithmetic that work the
same on scalars and on vectors (a constant takes the type of the value it meets), and the
counted loops every kernel is made of.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import llvmlite.ir as ir

F32, F64 = ir.FloatType(), ir.DoubleType()
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

# numpy dtype name -> (type of a value in registers, type in memory)
SCALAR = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I1}
MEMORY = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I8}
ITEMSIZE = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}


def is_float_type(t: ir.Type) -> bool:
    t = t.element if isinstance(t, ir.VectorType) else t
    return isinstance(t, (ir.FloatType, ir.DoubleType))


def lanes_of(t: ir.Type) -> int:
    return t.count if isinstance(t, ir.VectorType) else 1


def element_of(t: ir.Type) -> ir.Type:
    return t.element if isinstance(t, ir.VectorType) else t


def with_lanes(t: ir.Type, lanes: int) -> ir.Type:
    """The scalar type t, or a vector of `lanes` of it."""
    t = element_of(t)
    return t if lanes == 1 else ir.VectorType(t, lanes)


def mangle(t: ir.Type) -> str:
    """LLVM's intrinsic-name suffix for a type."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{mangle(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    if isinstance(t, ir.PointerType):
        return "p0"
    raise TypeError(f"no intrinsic mangling for {t}")


def int_type_like(t: ir.Type) -> ir.Type:
    """The integer type of the same bit width (and lanes) as float type t."""
    bits = 32 if isinstance(element_of(t), ir.FloatType) else 64
    return with_lanes(ir.IntType(bits), lanes_of(t))


def host_has(feature: str) -> bool:
    """Whether the host CPU has a feature (LLVM's name, e.g. "avx512f")."""
    if feature not in _FEATURES:
        import llvmlite.binding as llvm
        _FEATURES[feature] = llvm.get_host_cpu_features().get(feature, False)
    return _FEATURES[feature]


_FEATURES: dict = {}
_TARGET = threading.local()  # code generation for another CPU (AOT --target-cpu) is on


@contextmanager
def for_other_cpu() -> Iterator[None]:
    """Generate code for a CPU other than this one: no host-only instructions (AVX-512
    intrinsics), only what LLVM lowers for any x86-64."""
    before = getattr(_TARGET, "other", False)
    _TARGET.other = True
    try:
        yield
    finally:
        _TARGET.other = before


class IR:
    """An IRBuilder with the helpers kernels need."""

    def __init__(self, module: ir.Module, builder: ir.IRBuilder):
        self.module, self.b = module, builder

    @property
    def has_avx512(self) -> bool:
        """Whether the code is for this machine and it has AVX-512F (vscalef)."""
        return host_has("avx512f") and not getattr(_TARGET, "other", False)

    # -- constants ------------------------------------------------------------------------
    def const(self, t: ir.Type, value) -> ir.Constant:
        """value in type t (a splat when t is a vector)."""
        el = element_of(t)
        if isinstance(el, ir.IntType):
            value = int(value) & ((1 << el.width) - 1)
            if value >= 1 << (el.width - 1) and el.width > 1:
                value -= 1 << el.width
        else:
            value = float(value)
        c = ir.Constant(el, value)
        if isinstance(t, ir.VectorType):
            return ir.Constant(t, [c] * t.count)
        return c

    def like(self, x: ir.Value, value) -> ir.Constant:
        return self.const(x.type, value)

    def splat(self, x: ir.Value, lanes: int) -> ir.Value:
        """A scalar repeated in `lanes` lanes (vectors and lanes == 1 pass through)."""
        if lanes == 1 or isinstance(x.type, ir.VectorType):
            return x
        if isinstance(x, ir.Constant):
            return ir.Constant(ir.VectorType(x.type, lanes), [x] * lanes)
        vt = ir.VectorType(x.type, lanes)
        v = self.b.insert_element(ir.Constant(vt, ir.Undefined), x, I32(0))
        return self.b.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                                     ir.Constant(ir.VectorType(I32, lanes), [I32(0)] * lanes))

    def iota(self, t: ir.Type, lanes: int) -> ir.Constant:
        """<0, 1, ..., lanes-1> of element type t."""
        el = element_of(t)
        return ir.Constant(ir.VectorType(el, lanes), [ir.Constant(el, i) for i in range(lanes)])

    def stack_array(self, t: ir.Type, count: int, name: str = "") -> ir.Value:
        """An alloca of count x t as an opaque pointer (llvmlite types allocas)."""
        a = self.b.alloca(t, count, name=name)
        return self.b.inttoptr(self.b.ptrtoint(a, I64), PTR)

    # -- intrinsics ------------------------------------------------------------------------
    def intrinsic(self, name: str, ret: ir.Type, args: list, overload: list | None = None):
        """Call llvm.<name>.<mangled overload types>(args)."""
        types = overload if overload is not None else [ret]
        full = "llvm." + name + "".join("." + mangle(t) for t in types)
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), full)
        return self.b.call(fn, args)

    def unary_intrinsic(self, name: str, x: ir.Value) -> ir.Value:
        return self.intrinsic(name, x.type, [x])

    def fma(self, a, b, c) -> ir.Value:
        return self.intrinsic("fma", a.type, [a, b, c])

    def fabs(self, x) -> ir.Value:
        return self.unary_intrinsic("fabs", x)

    def copysign(self, mag, sign) -> ir.Value:
        return self.intrinsic("copysign", mag.type, [mag, sign])

    def rint(self, x) -> ir.Value:
        """Round to nearest, ties to even."""
        return self.unary_intrinsic("roundeven", x)

    def floor(self, x) -> ir.Value:
        return self.unary_intrinsic("floor", x)

    def sqrt(self, x) -> ir.Value:
        return self.unary_intrinsic("sqrt", x)

    # -- arithmetic helpers -------------------------------------------------------------------
    def select(self, cond, a, b) -> ir.Value:
        return self.b.select(cond, a, b)

    def isnan(self, x) -> ir.Value:
        return self.b.fcmp_unordered("uno", x, x)

    def fmax_nan(self, a, b) -> ir.Value:
        """max(a, b) propagating NaN from either operand."""
        return self.b.select(self.b.or_(self.isnan(a), self.b.fcmp_ordered(">", a, b)), a, b)

    def fmin_nan(self, a, b) -> ir.Value:
        return self.b.select(self.b.or_(self.isnan(a), self.b.fcmp_ordered("<", a, b)), a, b)

    def poly(self, x, coeffs) -> ir.Value:
        """sum coeffs[k] x^k by Horner's rule with fused multiply-adds."""
        acc = self.like(x, coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.like(x, c))
        return acc

    def chebyshev(self, s, coeffs) -> ir.Value:
        """sum coeffs[k] T_k(s) by Clenshaw's recurrence (stable for long series)."""
        two_s = self.b.fadd(s, s)
        b1 = self.like(s, 0.0)
        b2 = self.like(s, 0.0)
        for c in reversed(coeffs[1:]):
            b1, b2 = self.b.fsub(self.fma(two_s, b1, self.like(s, c)), b2), b1
        return self.b.fsub(self.fma(s, b1, self.like(s, coeffs[0])), b2)

    # -- control flow ----------------------------------------------------------------------
    @contextmanager
    def loop(self, lo: ir.Value, hi: ir.Value, step: int = 1,
             name: str = "i") -> Iterator[ir.Value]:
        """for i in range(lo, hi, step) (i64; hi - lo a multiple of step, or the last
        iteration is the one that reaches past hi); yields i with the builder in the body."""
        b = self.b
        pre = b.block
        head = b.append_basic_block(f"{name}.head")
        body = b.append_basic_block(f"{name}.body")
        done = b.append_basic_block(f"{name}.done")
        b.cbranch(b.icmp_signed("<", lo, hi), head, done)
        b.position_at_end(head)
        i = b.phi(I64, name=name)
        i.add_incoming(lo, pre)
        b.branch(body)
        b.position_at_end(body)
        yield i
        nxt = b.add(i, I64(step), name=f"{name}.next")
        i.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, hi), head, done)
        b.position_at_end(done)

    @contextmanager
    def if_then(self, cond: ir.Value, likely: bool | None = None) -> Iterator[None]:
        with self.b.if_then(cond, likely=likely):
            yield
