"""Accuracy of the math library in ULP: each function JIT-compiled alone (vector loop and
scalar remainder), applied to a dense sweep, compared with a float64 (or better) reference.

    python -m backends.llvm.ulp [--points N]      # the table of docs/llvm-backend.md

The error of one result is |got - ref| / ulp(ref) with ref rounded to the dtype; results
that are subnormal (or zero) in the dtype are left out (their ULP is the subnormal spacing).
"""
from __future__ import annotations

import argparse
import ctypes
import math
from dataclasses import dataclass
from typing import Callable

import llvmlite.ir as ir
import numpy as np

from backends.llvm import mathlib as ML
from backends.llvm.irutil import F32, F64, I64, IR, PTR, VOID
from backends.llvm.jit import compile_ir

_CACHE: dict = {}


def jit_function(name: str, dtype: str, arity: int = 1) -> Callable[..., np.ndarray]:
    """f(*arrays) -> array: mathlib's `name` over equal-length arrays of dtype."""
    key = (name, dtype, arity)
    if key in _CACHE:
        return _CACHE[key]
    module = ir.Module(f"ulp_{name}")
    ft = F32 if dtype == "float32" else F64
    lanes = 16 if dtype == "float32" else 8
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * (arity + 1) + [I64]), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    m = IR(module, b)
    n = fn.args[-1]
    whole = b.mul(b.sdiv(n, I64(lanes)), I64(lanes))
    for step, lo, hi in ((lanes, I64(0), whole), (1, whole, n)):
        t = ir.VectorType(ft, step) if step > 1 else ft
        with m.loop(lo, hi, step) as i:
            xs = [b.load(b.gep(fn.args[k], [i], source_etype=ft), typ=t, align=4)
                  for k in range(arity)]
            y = getattr(ML, name)(m, *xs)
            b.store(y, b.gep(fn.args[arity], [i], source_etype=ft), align=4)
    b.ret_void()
    jm = compile_ir(str(module), name=f"ulp_{name}")
    cfn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (arity + 1)), ctypes.c_int64)(
        jm.address("f"))

    def call(*arrays: np.ndarray) -> np.ndarray:
        arrays = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
        out = np.empty_like(arrays[0])
        cfn(*[a.ctypes.data for a in arrays], out.ctypes.data, arrays[0].size)
        return out

    call.module = jm  # keep the compiled code alive with the function
    _CACHE[key] = call
    return call


def max_ulp(got: np.ndarray, ref: np.ndarray, dtype: str) -> float:
    """The largest error in ULP of dtype over results that are normal in dtype."""
    info = np.finfo(dtype)
    rounded = ref.astype(dtype)
    ok = np.isfinite(ref) & (np.abs(ref) >= info.tiny) & (np.abs(rounded) <= info.max)
    if not ok.any():
        return 0.0
    spacing = np.spacing(np.abs(rounded[ok])).astype(np.float64)
    err = np.abs(got[ok].astype(np.float64) - ref[ok]) / spacing
    return float(err.max())


def _vectorize(fn):
    return np.vectorize(fn, otypes=[np.float64])


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu64(x):
    """0.5 x erfc(-x / sqrt 2) with the argument's rounding to float64 put back (from a
    long-double product), so the reference is good to ~1 ulp in erfc's tail too."""
    wide = -x.astype(np.longdouble) / np.sqrt(np.longdouble(2))
    a = wide.astype(np.float64)
    d = (wide - a).astype(np.float64)
    c = _vectorize(math.erfc)(a) - d * 2.0 / math.sqrt(math.pi) * np.exp(-a * a)
    return 0.5 * x * c


def _gelu_tanh64(x):
    """x sigmoid(2u): 0.5 x (1 + tanh u) without its cancellation (u in long double)."""
    w = x.astype(np.longdouble)
    u = np.sqrt(np.longdouble(2) / np.longdouble(np.pi)) * (w + np.longdouble(0.044715) * w ** 3)
    return (w / (1 + np.exp(-2 * u))).astype(np.float64)


@dataclass
class Sweep:
    """A function, its float64 reference, and the sweep range per dtype."""
    name: str
    reference: Callable
    ranges: dict
    spacing: str = "linear"


SWEEPS = [
    Sweep("exp", np.exp, {"float32": (-87.3, 88.7), "float64": (-708.0, 709.7)}),
    Sweep("expm1", np.expm1, {"float32": (-20.0, 88.0), "float64": (-40.0, 709.0)}),
    Sweep("log", np.log, {"float32": (1e-37, 3e38), "float64": (1e-300, 1e300)}, "log"),
    Sweep("log1p", np.log1p, {"float32": (-0.999, 1e4), "float64": (-0.999, 1e4)}),
    Sweep("tanh", np.tanh, {"float32": (-10.0, 10.0), "float64": (-20.0, 20.0)}),
    Sweep("sigmoid", _sigmoid64, {"float32": (-80.0, 80.0), "float64": (-700.0, 700.0)}),
    Sweep("erf", _vectorize(math.erf), {"float32": (-6.0, 6.0), "float64": (-6.0, 6.0)}),
    Sweep("erfc", _vectorize(math.erfc), {"float32": (-6.0, 9.0), "float64": (-6.0, 26.0)}),
    Sweep("sin", np.sin, {"float32": (-100.0, 100.0), "float64": (-100.0, 100.0)}),
    Sweep("cos", np.cos, {"float32": (-100.0, 100.0), "float64": (-100.0, 100.0)}),
    # gelu below x ~ -5: the results shrink like e^(-x^2/2) and any rounding of the
    # argument is amplified ~x^2 times (an ill-conditioned tail, not a method error)
    Sweep("gelu_erf", _gelu64, {"float32": (-5.0, 10.0), "float64": (-5.0, 10.0)}),
    Sweep("gelu_tanh", _gelu_tanh64, {"float32": (-5.0, 10.0), "float64": (-5.0, 10.0)}),
]
POW_RANGE = {"float32": ((0.05, 20.0), (-20.0, 20.0)), "float64": ((0.05, 20.0), (-20.0, 20.0))}


def sweep_points(sweep: Sweep, dtype: str, points: int) -> np.ndarray:
    lo, hi = sweep.ranges[dtype]
    if sweep.spacing == "log":
        x = np.exp(np.linspace(math.log(lo), math.log(hi), points))
    else:
        x = np.linspace(lo, hi, points)
    return x.astype(dtype)


def measure(sweep: Sweep, dtype: str, points: int) -> float:
    x = sweep_points(sweep, dtype, points)
    got = jit_function(sweep.name, dtype)(x)
    return max_ulp(got, sweep.reference(x.astype(np.float64)), dtype)


def measure_pow(dtype: str, points: int) -> float:
    (xlo, xhi), (ylo, yhi) = POW_RANGE[dtype]
    side = int(math.sqrt(points))
    x, y = np.meshgrid(np.exp(np.linspace(math.log(xlo), math.log(xhi), side)),
                       np.linspace(ylo, yhi, side))
    x, y = x.ravel().astype(dtype), y.ravel().astype(dtype)
    got = jit_function("pow", dtype, 2)(x, y)
    return max_ulp(got, np.power(x.astype(np.float64), y.astype(np.float64)), dtype)


def table(points: int) -> list[tuple[str, str, float]]:
    rows = []
    for sweep in SWEEPS:
        for dtype in ("float32", "float64"):
            rows.append((sweep.name, dtype, measure(sweep, dtype, points)))
    for dtype in ("float32", "float64"):
        rows.append(("pow", dtype, measure_pow(dtype, points)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="max ULP error of the llvm math library")
    parser.add_argument("--points", type=int, default=2_000_001)
    args = parser.parse_args()
    print(f"{'function':10} {'dtype':8} {'max ulp':>8}")
    for name, dtype, ulp in table(args.points):
        print(f"{name:10} {dtype:8} {ulp:8.2f}", flush=True)


if __name__ == "__main__":
    main()
