"""Timings of the llvm backend against numpy and the eager backend (not a test).

    python -m backends.llvm.measure [--repeat N] [--only NAME ...]

gemm 1024^3 float32 vs np.matmul at 1 and 2 threads; ew_chain gelu(x*a+b)*sigmoid(x) on 16M
float32 (outputs preallocated and reused) vs numpy; row softmax 4096x1024 vs numpy; the MLP
784-512-512-10 at batch 256 vs the eager backend. Medians over repeats, in one run, at the
same thread count for every implementation.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import dlc
from dlc import nn


class Timing(float):
    """A median in ms that also knows the fastest run (on a shared machine the minimum
    is the figure other processes disturb least)."""
    best: float = 0.0


def median_ms(fn, repeat: int, warmup: int = 2) -> Timing:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    out = Timing(1e3 * float(np.median(times)))
    out.best = 1e3 * float(np.min(times))
    return out


def _blas(threads: int):
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads)


def gemm(repeat: int, threads: int) -> list[tuple]:
    n = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    exe = dlc.compile(lambda x, y: x @ y, dlc.TensorSpec((n, n)), dlc.TensorSpec((n, n)),
                      backend="llvm", threads=threads)
    out = np.empty((n, n), np.float32)
    np.testing.assert_allclose(exe(a, b), a @ b, rtol=1e-3, atol=1e-3)
    flop = 2.0 * n ** 3
    with _blas(threads):
        t_np = median_ms(lambda: np.matmul(a, b, out=out), repeat)
    t_llvm = median_ms(lambda: exe(a, b, out=out), repeat)
    return [("gemm 1024^3 f32", threads, t_llvm, t_np, "numpy",
             f"{flop / t_llvm / 1e6:.0f} vs {flop / t_np / 1e6:.0f} GFLOP/s")]


def ew_chain(repeat: int, threads: int) -> list[tuple]:
    n = 16 * 1024 * 1024
    rng = np.random.default_rng(0)
    x, a, b = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))

    def chain(x, a, b):
        return nn.functional.gelu(x * a + b) * nn.functional.sigmoid(x)

    spec = dlc.TensorSpec((n,))
    exe = dlc.compile(chain, spec, spec, spec, backend="llvm", threads=threads)
    out = np.empty(n, np.float32)
    t1, t2 = np.empty_like(x), np.empty_like(x)

    def numpy_chain():
        # gelu (erf form) as 0.5 y (1 + erf(y / sqrt 2)); numpy has no erf: scipy's ufunc
        from scipy.special import erf
        np.multiply(x, a, out=t1)
        np.add(t1, b, out=t1)
        np.multiply(t1, 1 / math.sqrt(2), out=t2)
        erf(t2, out=t2)
        np.add(t2, 1, out=t2)
        np.multiply(t1, t2, out=t1)
        np.multiply(t1, 0.5, out=t1)
        np.negative(x, out=t2)
        np.exp(t2, out=t2)
        np.add(t2, 1, out=t2)
        np.divide(t1, t2, out=out)

    small = dlc.TensorSpec((4096,))
    want = dlc.compile(chain, small, small, small)(x[:4096], a[:4096], b[:4096])
    got = exe(x, a, b, out=out)[:4096]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    t_llvm = median_ms(lambda: exe(x, a, b, out=out), repeat)
    with _blas(threads):
        t_np = median_ms(numpy_chain, max(3, repeat // 3))
    gbs = 4 * n * 4 / t_llvm / 1e6
    return [("ew_chain 16M f32", threads, t_llvm, t_np, "numpy", f"{gbs:.1f} GB/s")]


def softmax(repeat: int, threads: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 1024), dtype=np.float32)
    exe = dlc.compile(lambda t: nn.functional.softmax(t, -1), dlc.TensorSpec(x.shape),
                      backend="llvm", threads=threads)
    out = np.empty_like(x)

    def numpy_softmax():
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(exe(x), numpy_softmax(), rtol=1e-5, atol=1e-7)
    t_llvm = median_ms(lambda: exe(x, out=out), repeat)
    t_np = median_ms(numpy_softmax, max(3, repeat // 3))
    return [("softmax 4096x1024 f32", threads, t_llvm, t_np, "numpy",
             f"{2 * x.nbytes / t_llvm / 1e6:.1f} GB/s")]


def mlp(repeat: int, threads: int) -> list[tuple]:
    from examples.mlp import MLP
    rng = np.random.default_rng(0)
    rows = []
    for batch in (256, 1):
        dlc.nn.init.manual_seed(0)
        model = MLP()
        spec = dlc.TensorSpec((batch, 784))
        x = rng.random((batch, 784), dtype=np.float32)
        exe = dlc.compile(model, spec, backend="llvm", threads=threads)
        eager = dlc.compile(model, spec)
        want = eager(x)
        np.testing.assert_allclose(exe(x), want, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(want).max()))
        out = np.empty((batch, 10), np.float32)
        t_llvm = median_ms(lambda: exe(x, out=out), repeat * (20 if batch == 1 else 1))
        with _blas(threads):
            t_eager = median_ms(lambda: eager(x), repeat * (20 if batch == 1 else 1))
        rows.append((f"MLP 784-512-512-10 b{batch}", threads, t_llvm, t_eager, "eager", ""))
    return rows


BENCHES = {"gemm": gemm, "ew_chain": ew_chain, "softmax": softmax, "mlp": mlp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES))
    args = parser.parse_args()
    print(f"{'workload':26} {'thr':>3} {'llvm ms':>9} {'(min)':>8} {'peer ms':>9} "
          f"{'(min)':>8} {'peer':>6} {'speedup':>8}  note (from medians)")
    for name in args.only or BENCHES:
        for threads in args.threads:
            for row in BENCHES[name](args.repeat, threads):
                w, t, ours, peer, who, note = row
                print(f"{w:26} {t:>3} {ours:9.3f} {ours.best:8.3f} {peer:9.3f} "
                      f"{peer.best:8.3f} {who:>6} {peer / ours:7.2f}x  {note}", flush=True)


if __name__ == "__main__":
    main()
