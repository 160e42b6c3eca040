"""GPU benchmarks of the triton backend against torch eager and torch.compile.

    python -m backends.triton.gpu_bench                 # needs a CUDA GPU
    python -m backends.triton.gpu_bench --json out.json --workloads softmax,gemm_fp16

Workloads and the target each must meet (issue 7):

    ew_chain   gelu(x * a + b) * sigmoid(x), 16M float32     >= 85% of copy bandwidth
    softmax    rows of 4096 x 1024 float32                    <= torch.compile's time
    layernorm  rows of 8192 x 1024 float32                    <= torch.compile's time
    gemm_fp16  4096^3, float16 in and out, float32 accumulate >= 85% of torch.matmul
    gemm_bf16  4096^3, bfloat16 (mixed_precision), float32 acc >= 85% of torch.matmul

plus the device-to-device copy of 16M float32 that ew_chain is measured against. Each dlc
workload is traced from the dlc function below, compiled with dlc.compile(backend="triton")
(the O2 pipeline: fusion makes ew_chain, softmax and layernorm one kernel each) and checked
against torch before it is timed. Times are medians of triton.testing.do_bench_cudagraph
(each callable captured in a CUDA graph and replayed, so Python launch overhead is not
timed, for torch and dlc alike). The CPU-side parts (graphs, checks, the table) run
anywhere; tests/backends/test_triton_gpu_bench.py covers them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

import dlc
from dlc.errors import DlcError

GB = 1e9
TFLOP = 1e12


@dataclass
class Workload:
    """One benchmark: the dlc function and specs, the torch reference, what it moves."""
    name: str
    title: str
    fn: Callable                       # traced by dlc.trace, and run by torch on tensors
    specs: list                        # dlc.TensorSpec per input
    torch_fn: Callable                 # the same computation in torch
    make_inputs: Callable              # (torch, device) -> list of tensors
    bytes_moved: int = 0               # for GB/s
    flops: int = 0                     # for TFLOP/s
    target: str = ""
    options: dict = field(default_factory=dict)   # dlc.compile options
    tolerance: float = 1e-5            # max |dlc - torch| / max |torch|


@dataclass
class Row:
    workload: str
    title: str
    dlc_ms: float | None
    eager_ms: float | None
    compiled_ms: float | None
    rate: str
    target: str
    verdict: str
    error: float | None = None


# -- the workloads (sizes scale down for the CPU-side tests) ------------------------------------
def _ew_chain(x, a, b):
    from dlc.nn import functional as F
    return F.gelu(x * a + b) * F.sigmoid(x)


def _torch_ew_chain(x, a, b):
    import torch.nn.functional as tf
    return tf.gelu(x * a + b) * tf.sigmoid(x)


def _softmax(x):
    from dlc.nn import functional as F
    return F.softmax(x, dim=-1)


def _torch_softmax(x):
    import torch
    return torch.softmax(x, dim=-1)


def _layernorm(x):
    from dlc.nn import functional as F
    return F.layer_norm(x, (x.shape[-1],))


def _torch_layernorm(x):
    import torch.nn.functional as tf
    return tf.layer_norm(x, (x.shape[-1],))


def _matmul(a, b):
    return a @ b


def _randn(*shape, dtype: str = "float32"):
    def make(torch, device):
        return torch.randn(shape, device=device, dtype=getattr(torch, dtype))
    return make


def _inputs(*makers):
    return lambda torch, device: [m(torch, device) for m in makers]


def workloads(scale: float = 1.0) -> list[Workload]:
    """The benchmark set; `scale` < 1 shrinks every size (for tests)."""
    def size(n: int, lo: int = 16) -> int:
        return max(lo, int(n * scale))

    n = size(16 * 2 ** 20, 1024)
    rows_s, rows_l, cols, k = size(4096), size(8192), size(1024), size(4096)
    gemm = _inputs(_randn(k, k, dtype="float16"), _randn(k, k, dtype="float16"))
    gemm_bf = _inputs(_randn(k, k, dtype="bfloat16"), _randn(k, k, dtype="bfloat16"))
    spec = dlc.TensorSpec
    return [
        Workload("ew_chain", f"ew_chain gelu(x*a+b)*sigmoid(x), {n} f32", _ew_chain,
                 [spec((n,)), spec(()), spec(())], _torch_ew_chain,
                 _inputs(_randn(n), _randn(), _randn()), bytes_moved=2 * 4 * n,
                 target=">= 85% of copy"),
        Workload("softmax", f"softmax rows {rows_s}x{cols} f32", _softmax,
                 [spec((rows_s, cols))], _torch_softmax, _inputs(_randn(rows_s, cols)),
                 bytes_moved=2 * 4 * rows_s * cols, target="<= torch.compile"),
        Workload("layernorm", f"layernorm rows {rows_l}x{cols} f32", _layernorm,
                 [spec((rows_l, cols))], _torch_layernorm, _inputs(_randn(rows_l, cols)),
                 bytes_moved=2 * 4 * rows_l * cols, target="<= torch.compile"),
        Workload("gemm_fp16", f"gemm {k}^3 fp16 (f32 acc)", _matmul,
                 [spec((k, k), "float16"), spec((k, k), "float16")], _matmul, gemm,
                 flops=2 * k ** 3, target=">= 85% of torch.matmul", tolerance=2e-2),
        Workload("gemm_bf16", f"gemm {k}^3 bf16 (f32 acc)", _matmul,
                 [spec((k, k)), spec((k, k))], _matmul, gemm_bf, flops=2 * k ** 3,
                 target=">= 85% of torch.matmul", options={"mixed_precision": "bfloat16"},
                 tolerance=3e-2),
    ]


def build(w: Workload, **options):
    """The dlc Executable of a workload (O2 pipeline, triton backend)."""
    graph = dlc.trace(w.fn, *w.specs, name=w.name)
    return dlc.compile(graph, backend="triton", **{**w.options, **options})


# -- measuring (GPU only) -----------------------------------------------------------------------
def _bench(fn: Callable, repeat_ms: int) -> float:
    from triton.testing import do_bench_cudagraph
    fn()  # compile, autotune, allocate: outside the captured graph
    return float(do_bench_cudagraph(fn, rep=repeat_ms))


def _rel_error(got, want) -> float:
    got, want = got.float(), want.float()
    scale = float(want.abs().max()) or 1.0
    return float((got - want).abs().max()) / scale


def copy_bandwidth(torch, device: str, n: int, repeat_ms: int) -> float:
    """GB/s of a device-to-device copy of n float32 (reads n, writes n)."""
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ms = _bench(lambda: dst.copy_(src), repeat_ms)
    return 2 * 4 * n / (ms * 1e-3) / GB


def measure(w: Workload, torch, device: str, repeat_ms: int) -> dict:
    inputs = w.make_inputs(torch, device)
    exe = build(w)
    want = w.torch_fn(*inputs)
    error = _rel_error(exe(*inputs), want)
    if not error <= w.tolerance:
        raise DlcError(f"gpu_bench {w.name}: dlc differs from torch by {error:.2e} of the "
                       f"output's scale (tolerance {w.tolerance:.0e})")
    compiled = torch.compile(w.torch_fn)
    return {"dlc": _bench(lambda: exe(*inputs), repeat_ms),
            "eager": _bench(lambda: w.torch_fn(*inputs), repeat_ms),
            "compiled": _bench(lambda: compiled(*inputs), repeat_ms), "error": error}


def verdict(w: Workload, times: dict, copy_gbs: float | None) -> tuple[str, str]:
    """(rate text, pass/fail text) of a workload's times against its target."""
    ms = times["dlc"]
    if w.flops:
        rate = f"{w.flops / (ms * 1e-3) / TFLOP:.1f} TFLOP/s"
        share = times["eager"] / ms  # torch.matmul's time over ours
        ok = share >= 0.85
        return rate, f"{'ok' if ok else 'MISSED'} ({share:.0%} of torch.matmul)"
    gbs = w.bytes_moved / (ms * 1e-3) / GB
    rate = f"{gbs:.0f} GB/s"
    if w.target.startswith(">= 85% of copy"):
        share = gbs / copy_gbs if copy_gbs else math.nan
        return rate, f"{'ok' if share >= 0.85 else 'MISSED'} ({share:.0%} of copy)"
    ratio = times["compiled"] / ms
    return rate, f"{'ok' if ratio >= 1.0 else 'MISSED'} ({ratio:.2f}x torch.compile)"


def format_table(rows: list[Row], header: str = "") -> str:
    cols = ["workload", "dlc ms", "torch ms", "compile ms", "dlc rate", "target", "result"]
    body = [[r.title, _ms(r.dlc_ms), _ms(r.eager_ms), _ms(r.compiled_ms), r.rate, r.target,
             r.verdict] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines = [header] if header else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def run(names: list[str] | None = None, repeat_ms: int = 200,
        device: str = "cuda") -> list[Row]:
    """Measure the workloads (all, or those named) on a CUDA device."""
    import torch
    if not torch.cuda.is_available():
        raise DlcError("gpu_bench needs a CUDA GPU (torch.cuda.is_available() is False); "
                       "on a machine without one, the kernels can still be checked with "
                       "backends.triton.gpu_check")
    chosen = [w for w in workloads() if names is None or w.name in names]
    n = next((w.bytes_moved // 8 for w in workloads() if w.name == "ew_chain"), 2 ** 24)
    copy_gbs = copy_bandwidth(torch, device, n, repeat_ms)
    rows = [Row("copy", f"copy {n} f32 device-to-device", None, None, None,
                f"{copy_gbs:.0f} GB/s", "(reference)", "")]
    for w in chosen:
        times = measure(w, torch, device, repeat_ms)
        rate, result = verdict(w, times, copy_gbs)
        rows.append(Row(w.name, w.title, times["dlc"], times["eager"], times["compiled"],
                        rate, w.target, result, times["error"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time the triton backend against torch on a GPU.")
    p.add_argument("--workloads", help="comma-separated subset: " +
                   ", ".join(w.name for w in workloads(scale=0.0)))
    p.add_argument("--repeat-ms", type=int, default=200, help="timing budget per callable")
    p.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    args = p.parse_args(argv)
    names = args.workloads.split(",") if args.workloads else None
    try:
        rows = run(names, args.repeat_ms)
    except DlcError as e:
        print(f"gpu_bench: error: {e}", file=sys.stderr)
        return 1
    import torch
    header = f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    print(format_table(rows, header))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": header, "rows": [asdict(r) for r in rows]}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
