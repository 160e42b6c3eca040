"""Machine floors measured in the same run as the workloads: copy bandwidth and the BLAS
sgemm rate at the thread count used. A workload's floor is max(bytes / bandwidth,
flops / sgemm rate): no implementation on this machine can beat it by much."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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

    def bandwidth_bound(self, flops: float, nbytes: float) -> bool:
        """Whether moving the bytes takes longer than the flops at the sgemm rate."""
        return nbytes > 0 and nbytes / (self.copy_gbs * 1e9) >= flops / (self.sgemm_gflops * 1e9)


def copy_call(nbytes: float, threads: int) -> tuple[Callable[[], object], str]:
    """A call that copies float32 arrays moving `nbytes` in all (read + written), and how
    it copies: numpy on one thread; with more threads, torch's parallel copy when it is
    installed."""
    n = max(int(nbytes) // 8, 1)
    src = np.random.default_rng(0).random(n, dtype=np.float32)
    dst = np.empty_like(src)
    if threads > 1:
        try:
            import torch
            torch.set_num_threads(threads)
            ts, td = torch.from_numpy(src), torch.from_numpy(dst)
            return (lambda: td.copy_(ts)), f"torch copy_, {threads} threads"
        except ImportError:
            pass
    return (lambda: np.copyto(dst, src)), "numpy copyto, 1 thread"


def copy_bandwidth(threads: int, mib: int = 256) -> tuple[float, str]:
    """GB/s (read + written) of a large float32 copy: `mib` MiB in all."""
    nbytes = mib * 2**20
    call, method = copy_call(nbytes, threads)
    return nbytes / measure(call, repeat=7, warmup=2).median / 1e9, method


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
