"""Machine floors measured in the same run as the workloads: copy bandwidth and the BLAS
sgemm rate at the thread count used. A workload's floor is max(bytes / bandwidth,
flops / sgemm rate): no implementation on this machine can beat it by much."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.bench.timing import measure


@dataclass
class Floors:
    copy_gbs: float        # bytes read + written per second / 1e9
    copy_method: str
    sgemm_gflops: float    # numpy (its BLAS) float32 matmul
    sgemm_n: int

    def seconds(self, flops: float, nbytes: float) -> float:
        return max(nbytes / (self.copy_gbs * 1e9), flops / (self.sgemm_gflops * 1e9))


def copy_bandwidth(threads: int, mib: int = 256) -> tuple[float, str]:
    """GB/s of a large float32 copy. numpy copies on one thread; with more threads, torch's
    parallel copy is used when it is installed."""
    n = mib * 2**20 // 4
    src = np.random.default_rng(0).random(n, dtype=np.float32)
    dst = np.empty_like(src)
    if threads > 1:
        try:
            import torch
            torch.set_num_threads(threads)
            ts, td = torch.from_numpy(src), torch.from_numpy(dst)
            t = measure(lambda: td.copy_(ts), repeat=7, warmup=2).median
            return 2 * src.nbytes / t / 1e9, f"torch copy_, {threads} threads"
        except ImportError:
            pass
    t = measure(lambda: np.copyto(dst, src), repeat=7, warmup=2).median
    return 2 * src.nbytes / t / 1e9, "numpy copyto, 1 thread"


def sgemm_rate(n: int = 2048) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    t = measure(lambda: np.matmul(a, b, out=c), repeat=5, warmup=1).median
    return 2.0 * n ** 3 / t / 1e9


def measure_floors(threads: int, tiny: bool = False) -> Floors:
    gbs, method = copy_bandwidth(threads, mib=4 if tiny else 256)
    n = 128 if tiny else 2048
    return Floors(gbs, method, sgemm_rate(n), n)
