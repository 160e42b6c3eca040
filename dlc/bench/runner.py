"""Run one workload: dlc on each backend and each peer, agreement first, then timing in
interleaved rounds.

Eager is always run first: it is the reference every other result is checked against, and
the baseline of every speedup."""
from __future__ import annotations

import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import dlc
from dlc.bench import peers as peer_mod
from dlc.bench.floors import Floors, copy_call
from dlc.bench.timing import Samples, calls_per_sample, measure
from dlc.bench.workload import Workload
from dlc.ir.graph import Graph


@dataclass
class Result:
    workload: str
    impl: str                  # backend name, or "peer:NAME"
    median: float | None = None
    min: float | None = None
    max: float | None = None
    samples: list[float] = field(default_factory=list)
    compile_cold: float | None = None
    compile_warm: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    speedup: float | None = None          # eager median / this median
    floor_fraction: float | None = None   # floor seconds / this median
    # GB/s of a copy of the workload's bytes timed in the same rounds (bandwidth-bound
    # workloads): the floor then moves with the machine's bandwidth of the moment
    copy_gbs: float | None = None
    error: str | None = None
    skipped: str | None = None            # why this pair was not run (no such version)
    kernels: list = field(default_factory=list)
    profile: list = field(default_factory=list)     # llvm KernelTime rows (--profile)

    @property
    def ok(self) -> bool:
        return self.error is None


def random_inputs(graph: Graph, rng: np.random.Generator, int_high: int) -> list[np.ndarray]:
    out = []
    for v in graph.user_inputs:
        dtype = v.type.dtype
        if dtype.startswith("float"):
            out.append(rng.standard_normal(v.type.shape).astype(dtype))
        elif dtype == "bool":
            out.append(rng.random(v.type.shape) < 0.5)
        else:
            out.append(rng.integers(0, int_high, size=v.type.shape).astype(dtype))
    return out


def build_graph(wl: Workload, size: dict) -> tuple[object, Graph]:
    target, specs = wl.build(**size)
    graph = target if isinstance(target, Graph) else dlc.trace(target, *specs)
    return target, graph


def compare(got: list, want: list, rtol: float, atol: float) -> tuple[float, float]:
    """Max abs error and max error relative to the largest reference value; raises if
    shapes differ, a value is NaN where the reference is not, or the error is beyond
    rtol/atol."""
    abs_err = rel_err = 0.0
    if len(got) != len(want):
        raise AssertionError(f"{len(got)} outputs, the reference has {len(want)}")
    for g, w in zip(got, want):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            raise AssertionError(f"output shape {g.shape}, the reference has {w.shape}")
        if np.isnan(g).any() and not np.isnan(w).any():
            raise AssertionError("NaN in the output")
        diff = np.abs(g - w)
        abs_err = max(abs_err, float(diff.max(initial=0.0)))
        # normwise: elementwise ratios blow up where the reference crosses zero
        scale = max(float(np.abs(w).max(initial=0.0)), atol)
        rel_err = max(rel_err, float(diff.max(initial=0.0)) / scale)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return abs_err, rel_err


def _outputs(result) -> list:
    return list(result) if isinstance(result, tuple) else [result]


def _backend_options(backend: str, threads: int) -> dict:
    return {"threads": threads} if backend == "llvm" else {}


def _compile(graph: Graph, backend: str, threads: int):
    start = time.perf_counter()
    exe = dlc.compile(graph, backend=backend, **_backend_options(backend, threads))
    return exe, time.perf_counter() - start


def run_workload(wl: Workload, size: dict, backends: list[str], peers: list[str],
                 floors: Floors | None, repeat: int, warmup: int, threads: int,
                 kernels: bool = False, seed: int = 0, profile: bool = False,
                 progress: Callable[[str], None] = lambda s: None) -> list[Result]:
    """Every implementation is built and checked first; then all are timed in interleaved
    rounds (see _time_rounds), so that a slow spell of the machine falls on each of them
    alike rather than on whichever was being timed."""
    rng = np.random.default_rng(seed)
    results: list[Result] = []
    try:
        target, graph = build_graph(wl, size)
    except Exception as e:  # one failing workload must not stop the suite
        return [Result(wl.name, "build", error=_one_line(e))]
    arrays = random_inputs(graph, rng, wl.int_high)
    floor = floors.seconds(wl.flops(size), wl.bytes(size)) if floors else None
    reference = None
    timed: list[tuple[Result, Callable[[], object]]] = []
    copy = None
    if floors and floors.bandwidth_bound(wl.flops(size), wl.bytes(size)):
        # the copy is timed in the same rounds as the implementations: the machine's
        # bandwidth drifts by tens of percent within minutes (measured: 17 to 52 GB/s)
        copy = Result(wl.name, "floor:copy")
        timed.append((copy, copy_call(wl.bytes(size), threads)[0]))
    order = ["eager"] + [b for b in backends if b != "eager"]
    eager = None
    for backend in order:
        progress(f"{wl.name}: {backend}")
        r = Result(wl.name, backend)
        try:
            exe, r.compile_cold = _compile(graph, backend, threads)
            _, r.compile_warm = _compile(graph, backend, threads)
            out = _outputs(exe(*arrays))
            if reference is None:
                reference = out
                if any(np.isnan(np.asarray(o, dtype=np.float64)).any() for o in out):
                    raise AssertionError("the eager reference output has NaN")
            else:
                r.max_abs_err, r.max_rel_err = compare(out, reference, wl.rtol, wl.atol)
            timed.append((r, lambda exe=exe: exe(*arrays)))
            if kernels:
                from dlc.bench.kernels import kernel_report
                r.kernels = kernel_report(exe, arrays, backend, floors, repeat, threads)
            if profile and backend == "llvm":
                from backends.llvm.profile import profile as profile_kernels
                r.profile = profile_kernels(exe.graph, arrays, threads, calls=repeat * 5,
                                            params=exe.state)
        except Exception as e:
            r.error = _one_line(e)
            if "DLC_BENCH_DEBUG" in __import__("os").environ:
                traceback.print_exc(file=sys.stderr)
        if backend == "eager":
            eager = r
        if backend in backends:
            results.append(r)
    for peer in peers:
        progress(f"{wl.name}: {peer}")
        r = Result(wl.name, f"peer:{peer}")
        results.append(r)
        factory = wl.peers.get(peer)
        if factory is None and peer == "onnxruntime" and not wl.training:
            factory = wl.peers.get("torch")
        if factory is None:
            r.skipped = wl.unavailable.get(peer) or f"no {peer} version of {wl.name}"
            continue
        try:
            prepared = peer_mod.prepare(peer, factory, target, size, arrays, threads,
                                        wl.training)
            out = prepared.outputs(prepared.call())
            if reference is not None:
                r.max_abs_err, r.max_rel_err = compare(out, reference, wl.rtol, wl.atol)
            timed.append((r, prepared.call))
        except Exception as e:
            r.error = _one_line(e)
    progress(f"{wl.name}: timing {len(timed)} implementations in turn")
    _time_rounds(timed, repeat, warmup)
    eager_median = eager.median if eager is not None and eager.ok else None
    copy_gbs = None
    if copy is not None and copy.ok and copy.median:
        floor = max(copy.median, floors.seconds(wl.flops(size), 0.0))
        copy_gbs = wl.bytes(size) / copy.median / 1e9
    for r in results:
        r.copy_gbs = copy_gbs
        if r.ok and r.median:
            if eager_median:
                r.speedup = eager_median / r.median
            if floor:
                r.floor_fraction = floor / r.median
    return results


# Thread pools of the implementation timed before (ONNX Runtime's, XLA's) keep spinning
# for a while after their last call, and on a 2-core machine they take the cores from the
# next one: measured, dlc's MLP b256 3x slower when timed right after ORT's layernorm.
SETTLE_S = 0.3
# timing rounds: each takes a share of every implementation's samples, in a rotating order
ROUNDS = 5


def _time_rounds(timed: list, repeat: int, warmup: int) -> None:
    """Time every (Result, call) pair: `repeat` samples each, taken in up to ROUNDS rounds;
    in each round every implementation takes its share of samples, starting from a
    different one each round, after SETTLE_S of quiet. The machine this runs on drifts by
    tens of percent within minutes: so the drift lands on every implementation alike, and
    their ratios hold within one run. An implementation that fails while timed is reported
    with its error and leaves the others running."""
    rounds = max(1, min(ROUNDS, repeat))
    shares = [repeat // rounds + (k < repeat % rounds) for k in range(rounds)]
    inner: dict[int, int] = {}
    for k, share in enumerate(shares):
        for j in range(len(timed)):
            r, fn = timed[(j + k) % len(timed)]
            if not r.ok:
                continue
            time.sleep(SETTLE_S)  # let the previous implementation's threads go idle
            try:
                if k == 0:
                    for _ in range(warmup):
                        fn()
                    inner[id(r)] = calls_per_sample(fn)
                else:
                    fn()  # one untimed call after the pause: caches and threads wake
                s: Samples = measure(fn, repeat=share, warmup=0, inner=inner[id(r)])
            except Exception as e:
                r.error = _one_line(e)
                continue
            r.samples += s.seconds
    for r, _ in timed:
        if r.ok and r.samples:
            r.median = statistics.median(r.samples)
            r.min, r.max = min(r.samples), max(r.samples)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:300]
