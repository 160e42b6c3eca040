"""The in-call kernel profile of the llvm backend (backends/llvm/profile.py, `dlc bench
--profile`): one row per kernel of the compiled program, times that add up to about one
call, and a profiling build computes what the plain build does."""
import subprocess
import sys
from pathlib import Path

import numpy as np

import dlc
from dlc import nn
from backends.llvm.profile import profile, profile_table, profiling_executable

SUITE = Path(__file__).resolve().parents[2] / "examples" / "suite.py"


def _mlp_graph():
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 64))
    return dlc.compiler.optimized_graph(model, dlc.TensorSpec((128, 256)))


def test_profile_has_every_kernel_and_adds_up(rng):
    graph = _mlp_graph()
    x = rng.standard_normal((128, 256)).astype(np.float32)
    rows = profile(graph, [x], threads=2, calls=20)
    plain = dlc.compile(graph, backend="llvm", threads=2)
    assert [r.name for r in rows] == [name for name, _ in plain.kernels()]
    assert all(r.seconds > 0 and 0 <= r.share <= 1 for r in rows)
    assert abs(sum(r.share for r in rows) - 1) < 1e-9
    # no wall-clock comparison: on a shared machine timings belong in `dlc bench`
    assert np.isfinite(sum(r.seconds for r in rows))
    table = profile_table(rows)
    assert rows[0].name in table and "total" in table.splitlines()[-1]


def test_profiling_build_computes_the_same(rng):
    graph = _mlp_graph()
    x = rng.standard_normal((128, 256)).astype(np.float32)
    got = profiling_executable(graph, threads=2)(x)
    want = dlc.compile(graph, backend="eager")(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bench_profile_prints_the_kernels():
    done = subprocess.run([sys.executable, "-m", "dlc", "bench", f"{SUITE}:mlp",
                           "--backends", "llvm", "--profile", "--tiny", "--repeat", "2",
                           "--no-floors"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "timed in the call" in done.stdout
    assert "fused0_matmul_add_relu" in done.stdout


def test_bench_profile_without_llvm_says_what_to_add():
    done = subprocess.run([sys.executable, "-m", "dlc", "bench", f"{SUITE}:mlp", "--profile",
                           "--tiny", "--no-floors"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert "--profile times the kernels of the llvm backend: add --backends llvm" in \
        done.stderr
