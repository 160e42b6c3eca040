"""GEMMs whose A is contiguous along k only in runs, read in place a run at a time.

Attention's output projection reads its rows through a view: the heads (B, H, S, D) are
merged back into rows (B*S or S*B, H*D), so along k = (head, d) A is contiguous within a
head's D elements and jumps between heads. Such an A is not packed: the micro-kernel runs
one K loop per run. Each case checks that this path was taken (the run length the GEMM
kernel recorded in its plan) and the products against float64 numpy on fresh inputs; the
cases where runs are too short, too many, or do not tile K are packed and checked too.
"""
import numpy as np
import pytest

import dlc
from backends.llvm.gemm import ACC, RUN_GRID_LIMIT, Gemm, a_run
from backends.llvm.loops import Buffer, Load, Ref, Var, iadd, ifloordiv, imod, imul
from backends.llvm.views import imin

RTOL = {"float32": 1e-5, "float64": 1e-12}


def gemm_runs(exe) -> list[int]:
    """The A run length of each GEMM kernel of a compiled graph (0: A is packed)."""
    return [k.extra["plan"]["a_run"] for k in exe.program.spec.kernels if "plan" in k.extra]


def assert_product_close(got: np.ndarray, want: np.ndarray, dtype: str, where: str) -> None:
    """A sum of K products: its error scales with the terms, not with each result."""
    assert got.shape == want.shape and got.dtype == np.dtype(dtype), where
    assert np.isfinite(got).all(), where
    atol = RTOL[dtype] * max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=atol, err_msg=where)


def head_order(seq_first: bool) -> tuple:
    """The permutation of (B, H, S, D) whose leading two axes become the rows."""
    return (2, 0, 1, 3) if seq_first else (0, 2, 1, 3)


def merged_heads(x: np.ndarray, seq_first: bool) -> np.ndarray:
    """The reference rows: (B*S, H*D), or (S*B, H*D) when seq_first."""
    bsz, heads, seq, d = x.shape
    return x.transpose(head_order(seq_first)).reshape(bsz * seq, heads * d)


def out_projection(seq_first: bool):
    """Attention's last step: heads merged into rows, then rows @ W^T + bias."""
    def project(x, w, bias):
        bsz, heads, seq, d = x.shape
        rows = x.permute(*head_order(seq_first)).reshape(bsz * seq, heads * d)
        return rows @ w.transpose() + bias
    return project


def random_arrays(specs: list, dtype: str, rng) -> list[np.ndarray]:
    return [rng.standard_normal(s).astype(dtype) for s in specs]


# (batch, heads, seq, head size, out features, seq_first): the suite's shape at a shorter
# sequence; M and N off the register tile; 16 runs of 8 (the most runs, the shortest);
# runs of 32 where K = 96 has the longer divisor 48 that is not a run
PROJECTIONS = [(8, 4, 16, 64, 256, False), (3, 4, 5, 16, 17, False),
               (2, 16, 7, 8, 40, True), (5, 3, 9, 32, 33, True), (2, 2, 11, 24, 50, False)]


@pytest.mark.parametrize("bsz,heads,seq,d,n,seq_first", PROJECTIONS)
def test_out_projection_reads_heads_in_place(bsz, heads, seq, d, n, seq_first, rng):
    _check_projection(bsz, heads, seq, d, n, seq_first, "float32", rng)


def test_out_projection_float64(rng):
    _check_projection(3, 4, 5, 16, 17, False, "float64", rng)


def _check_projection(bsz, heads, seq, d, n, seq_first, dtype, rng):
    specs = [(bsz, heads, seq, d), (n, heads * d), (n,)]
    graph = dlc.trace(out_projection(seq_first), *[dlc.TensorSpec(s, dtype) for s in specs])
    exe = dlc.compile(graph, backend="llvm", threads=2)
    assert gemm_runs(exe) == [d], "the merged heads were not read in place a head at a time"
    x, w, bias = random_arrays(specs, dtype, rng)
    want = merged_heads(x.astype(np.float64), seq_first) @ w.astype(np.float64).T + bias
    assert_product_close(exe(x, w, bias), want, dtype,
                         f"B={bsz} H={heads} S={seq} D={d} N={n} seq_first={seq_first}")


@pytest.mark.parametrize("shared_weight", [False, True], ids=["batched", "shared"])
def test_batched_product_of_merged_heads(shared_weight, rng):
    """A batch GEMM (one per sample) whose A is the sample's merged heads, the weight per
    sample or broadcast to all."""
    bsz, heads, seq, d, n = 3, 4, 13, 16, 20
    specs = [(bsz, heads, seq, d), (heads * d, n) if shared_weight else (bsz, heads * d, n)]

    def product(x, w):
        return x.permute(0, 2, 1, 3).reshape(bsz, seq, heads * d) @ w

    graph = dlc.trace(product, *[dlc.TensorSpec(s) for s in specs])
    exe = dlc.compile(graph, backend="llvm", threads=2)
    assert gemm_runs(exe) == [d]
    x, w = random_arrays(specs, "float32", rng)
    rows = x.astype(np.float64).transpose(0, 2, 1, 3).reshape(bsz, seq, heads * d)
    assert_product_close(exe(x, w), rows @ w.astype(np.float64), "float32",
                         f"shared_weight={shared_weight}")


# (heads, head size): runs shorter than 8; 32 runs, more than 16 loops
SHORT_OR_MANY = [(8, 4), (32, 8)]


@pytest.mark.parametrize("heads,d", SHORT_OR_MANY)
def test_short_or_many_runs_are_packed(heads, d, rng):
    bsz, seq, n = 2, 9, 24
    specs = [(bsz, heads, seq, d), (n, heads * d), (n,)]
    graph = dlc.trace(out_projection(False), *[dlc.TensorSpec(s) for s in specs])
    exe = dlc.compile(graph, backend="llvm", threads=2)
    assert gemm_runs(exe) == [0]
    x, w, bias = random_arrays(specs, "float32", rng)
    want = merged_heads(x.astype(np.float64), False) @ w.astype(np.float64).T + bias
    assert_product_close(exe(x, w, bias), want, "float32", f"H={heads} D={d}")


def test_runs_that_do_not_tile_k_are_packed(rng):
    """Rows of 18 cut from runs of 12: where a run starts depends on the row, so no run
    length tiles K and A is packed."""
    specs = [(6, 12, 8), (18, 10)]

    def product(x, w):
        return x.permute(0, 2, 1).reshape(32, 18) @ w

    graph = dlc.trace(product, *[dlc.TensorSpec(s) for s in specs])
    exe = dlc.compile(graph, backend="llvm", threads=2)
    assert gemm_runs(exe) == [0]
    x, w = random_arrays(specs, "float32", rng)
    want = x.astype(np.float64).transpose(0, 2, 1).reshape(32, 18) @ w.astype(np.float64)
    assert_product_close(exe(x, w), want, "float32", "rows of 18 over runs of 12")


# -- the run test on hand-made index expressions ----------------------------------------------
def _gemm(a_index, M: int, K: int, batch=(), size: int | None = None) -> Gemm:
    buf = Buffer("a", "float32", (size or 1 << 30,))
    out = Buffer("out", "float32", (M,))
    return Gemm("g", "float32", M, 1, K, list(batch), Load(buf, a_index), Var("k"),
                Ref(ACC, "float32"), out, Var("i"), "i", "j", "k")


def _heads_index(M: int, heads: int, d: int):
    """A(i, k) of rows (M, heads*d) merged from (heads, M, d)."""
    i, k = Var("i"), Var("k")
    return iadd(imul(ifloordiv(k, d), M * d), imul(i, d), imod(k, d))


def test_run_is_the_longest_that_holds():
    assert a_run(_gemm(_heads_index(10, 4, 32), 10, 128)) == 32
    assert a_run(_gemm(iadd(imul(Var("i"), 64), Var("k")), 10, 64)) == 64  # contiguous


def test_one_break_anywhere_in_the_grid_rejects_a_run():
    """A jump at the grid's last point only (row M - 1, k = K - 1) is found."""
    M, K = 12, 64
    flat = iadd(imul(Var("i"), K), Var("k"))
    jump = imul(ifloordiv(flat, M * K - 1), 1000)
    assert a_run(_gemm(iadd(_heads_index(M, 2, 32), jump), M, K)) == 0
    clamped = iadd(imul(Var("i"), K), imin(Var("k"), K - 2))  # the last k repeats
    assert a_run(_gemm(clamped, M, K)) == 0


def test_batch_variables_are_part_of_the_grid():
    """Runs of 16 hold for batch 0; batch 1 jumps every 4 k's: no run."""
    M, K = 8, 32
    b = Var("b")
    index = iadd(_heads_index(M, 2, 16), imul(b, 4096), imul(ifloordiv(Var("k"), 4), b))
    assert a_run(_gemm(index, M, K, batch=[("b", 1)])) == 16
    assert a_run(_gemm(index, M, K, batch=[("b", 2)])) == 0


def test_gives_up_on_a_grid_too_large_or_an_index_it_cannot_evaluate():
    M, K = RUN_GRID_LIMIT // 64 + 1, 128
    assert a_run(_gemm(_heads_index(M, 2, 64), M, K)) == 0
    table = Buffer("table", "int64", (128,))
    gathered = iadd(imul(Var("i"), 128), Load(table, Var("k")))
    assert a_run(_gemm(gathered, 4, 128)) == 0
