"""The simplification passes: golden text (input IR, one pass, expected IR) from
tests/passes/golden/, each also run on fresh random inputs, and checks on data the text form
does not carry (const inputs, signed zeros, NaN and Inf, training-step aliases)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph
from dlc.ir.types import TensorType
from passes.manager import PASSES, run_pipeline
from passes.schedule import peak_live_bytes
from passes.simplify import algebra, cse, dce, decompose_free, fold
from passes.simplify.fold import MAX_GROWTH
from tests.ops.harness import TOL, assert_allclose

GOLDEN = Path(__file__).resolve().parent / "golden"
EXPECTED = "// expected:"
BIT_EXACT = {"fold", "algebra", "cse", "dce", "schedule"}  # decompose rounds differently


# -- golden files ------------------------------------------------------------------------------
def read_golden(path: Path) -> tuple[str, str, str]:
    """(pass name, input text, expected text without comments) of a golden file."""
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("// pass: "), f"{path.name}: the first line names the pass"
    source, sep, expected = text.partition(EXPECTED)
    assert sep, f"{path.name}: no '{EXPECTED}' line"
    lines = [ln for ln in expected.strip().splitlines() if not ln.startswith("//")]
    return first.removeprefix("// pass: ").strip(), source, "\n".join(lines)


def random_args(graph: Graph, rng: np.random.Generator,
                special: bool = True) -> dict[str, np.ndarray]:
    """An array for every input: normal floats (with some -0.0, Inf and NaN when `special`),
    small ints."""
    args = {}
    for v in graph.inputs:
        if v.data is not None:
            args[v.name] = v.data
        elif v.type.dtype == "bool":
            args[v.name] = rng.random(v.type.shape) < 0.5
        elif v.type.dtype.startswith("int"):
            args[v.name] = rng.integers(-5, 6, v.type.shape).astype(v.type.dtype)
        else:
            a = rng.standard_normal(v.type.shape)
            if special and a.size >= 4:
                a.flat[rng.choice(a.size, 4, replace=False)] = [-0.0, np.inf, -np.inf, np.nan]
            args[v.name] = a.astype(v.type.dtype)
    return args


def run_named(graph: Graph, args: dict[str, np.ndarray]) -> list[np.ndarray]:
    with np.errstate(all="ignore"):  # the inputs hold Inf and NaN on purpose
        return run_graph(graph, [args[v.name] if v.data is None else v.data
                                 for v in graph.inputs])


def run_user(graph: Graph, *user: np.ndarray) -> list[np.ndarray]:
    """Run with these arrays for the user inputs, the graph's own data for the rest."""
    return run_named(graph, dict(zip((v.name for v in graph.user_inputs), user)))


GOLDEN_FILES = sorted(GOLDEN.glob("*.dlc"))


def test_every_simplification_pass_has_a_golden_file():
    covered = {read_golden(p)[0] for p in GOLDEN_FILES}
    assert {"decompose", "fold", "algebra", "cse", "dce", "schedule"} <= covered


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden(path, rng):
    name, source, expected = read_golden(path)
    before = dlc.parse(source, path.name)
    after = PASSES[name].load()(before)
    dlc.verify(after)
    assert str(after) == expected, f"{path.name}: got\n{after}"
    assert str(dlc.parse(expected)) == expected  # the expected text is canonical
    # passes that keep every bit must keep NaN, Inf and -0.0 too; a pass that rounds
    # differently (decompose) is compared within tolerance, on finite inputs: a NaN spread
    # through a matmul would leave nothing to compare
    args = random_args(before, rng, special=name in BIT_EXACT)
    want, got = run_named(before, args), run_named(after, args)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        if name in BIT_EXACT:  # the same bits: -0.0 stays -0.0, NaN stays NaN
            np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
            np.testing.assert_array_equal(g, w)
        else:
            assert_allclose(g, w, *TOL["float32"])


# -- constant folding on data ------------------------------------------------------------------
def const_input(b: Builder, name: str, array: np.ndarray):
    return b.add_input(name, TensorType(array.shape, array.dtype.name), "const", array)


def test_fold_computes_const_inputs_like_torch(rng):
    c = rng.standard_normal((3, 4)).astype(np.float32)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with Builder("g") as b:
        xv = b.add_input("x", TensorType((3, 4), "float32"))
        cv = const_input(b, "c", c)
        e = b.emit("exp", (cv,), {})
        s = b.emit("sum", (e,), {"axes": (1,), "keepdims": True})
        out = b.emit("mul", (xv, s), {})
    graph = dce(fold(b.finish([out])))
    assert [n.op.name for n in graph.nodes] == ["mul"]  # exp and sum were folded
    folded = graph.nodes[0].inputs[1]
    assert folded.role == "const" and folded.name.startswith("fold.")
    assert_allclose(folded.data, torch.exp(torch.from_numpy(c)).sum(1, keepdim=True),
                    *TOL["float32"])
    (got,) = run_user(graph, x)
    assert_allclose(got, x * torch.exp(torch.from_numpy(c)).sum(1, keepdim=True)
                    .numpy(), *TOL["float32"])


def test_fold_leaves_params_and_random_ops(rng):
    with Builder("g") as b:
        w = b.add_input("w", TensorType((4,), "float32"), "param", np.ones(4, np.float32))
        seed = b.add_input("s", TensorType((), "int64"), "const", np.asarray(3, np.int64))
        e = b.emit("exp", (w,), {})
        r = b.emit("random_uniform", (seed,), {"shape": (4,), "dtype": "float32"})
        out = b.emit("mul", (e, r), {})
    graph = fold(b.finish([out]))
    assert [n.op.name for n in graph.nodes] == ["exp", "random_uniform", "mul"]


def test_fold_does_not_grow_a_small_table_into_a_big_array(rng):
    table = rng.standard_normal(8).astype(np.float32)
    with Builder("g") as b:
        c = const_input(b, "table", table)
        big = b.emit("broadcast_to", (c,), {"shape": (4096, 8)})
        small = b.emit("reshape", (c,), {"shape": (2, 4)})
    graph = fold(b.finish([big, small]))
    assert [n.op.name for n in graph.nodes] == ["broadcast_to"]  # reshape folded
    np.testing.assert_array_equal(graph.outputs[1].data, table.reshape(2, 4))
    assert graph.nodes[0].type.size > MAX_GROWTH * table.size


def test_fold_keeps_an_int64_that_a_float_attribute_cannot_hold():
    big = np.full(3, 2**53 + 1, np.int64)
    with Builder("g") as b:
        out = b.emit("neg", (const_input(b, "c", big),), {})
    graph = fold(b.finish([out]))
    (result,) = graph.outputs
    assert result.role == "const" and result.data.dtype == np.int64
    np.testing.assert_array_equal(result.data, -big)  # not rounded to -2**53


def test_cse_merges_equal_const_data_and_dce_drops_the_copy(rng):
    data = rng.standard_normal(5).astype(np.float32)
    with Builder("g") as b:
        x = b.add_input("x", TensorType((5,), "float32"))
        a, c = const_input(b, "a", data), const_input(b, "c", data.copy())
        out = b.emit("add", (b.emit("mul", (x, a), {}), b.emit("mul", (x, c), {})), {})
    graph = dce(cse(b.finish([out])))
    assert [v.name for v in graph.inputs] == ["x", "a"]
    assert [n.op.name for n in graph.nodes] == ["mul", "add"]
    xs = rng.standard_normal(5).astype(np.float32)
    assert_allclose(run_user(graph, xs)[0], 2 * xs * data, *TOL["float32"])


def test_algebra_sees_ones_in_const_data():
    with Builder("g") as b:
        x = b.add_input("x", TensorType((2, 3), "float32"))
        ones = const_input(b, "ones", np.ones((2, 3), np.float32))
        out = b.emit("mul", (ones, x), {})
    assert dce(algebra(b.finish([out]))).outputs[0].name == "x"


SPECIAL = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, 1.5, -2.25, 1e-45], np.float32)


def test_algebra_is_bit_exact_on_signed_zeros_inf_and_nan():
    def f(x):
        return (((x * 1.0) / 1.0 + (-0.0)) - 0.0).cast("float64").cast("float32")

    graph = dlc.trace(f, dlc.TensorSpec(SPECIAL.shape))
    simplified = run_pipeline(graph, "O1").graph
    assert simplified.nodes == [] and simplified.outputs == simplified.inputs
    (got,) = run_graph(simplified, [SPECIAL])
    want = ((((SPECIAL * np.float32(1)) / np.float32(1)) + np.float32(-0.0)) - np.float32(0.0))
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(got, want)


def test_algebra_keeps_x_plus_positive_zero():
    graph = run_pipeline(dlc.trace(lambda x: x + 0.0, dlc.TensorSpec(SPECIAL.shape)), "O1").graph
    assert [n.op.name for n in graph.nodes] == ["full", "add"]
    (got,) = run_graph(graph, [SPECIAL])
    assert not np.signbit(got[0])  # -0.0 + 0.0 is +0.0, as IEEE says


# -- whole-graph properties --------------------------------------------------------------------
def test_passes_keep_locs_scopes_and_meta(rng):
    model = dlc.nn.Sequential(dlc.nn.Linear(4, 6), dlc.nn.LayerNorm(6))
    step = dlc.train_step(model, dlc.nn.functional.mse_loss, dlc.optim.SGD(lr=0.1),
                          dlc.TensorSpec((3, 4)), dlc.TensorSpec((3, 6)))
    graph = step
    for p in (decompose_free, fold, algebra, cse, dce):
        graph = p(graph)
        dlc.verify(graph)
        assert graph.aliases == step.aliases and graph.meta == step.meta
    scoped = [n for n in graph.nodes if n.scope == "1 (LayerNorm)"]
    assert any(n.op.name == "rsqrt" for n in scoped)  # layer_norm's primitives keep its layer
    assert all(n.loc is not None for n in graph.nodes)


def test_schedule_lowers_the_peak_and_never_raises_it(rng):
    name, source, _ = read_golden(GOLDEN / "schedule_peak.dlc")
    graph = dlc.parse(source)
    scheduled = PASSES[name].load()(graph)
    assert peak_live_bytes(scheduled) < peak_live_bytes(graph)
    assert PASSES[name].load()(scheduled) is scheduled  # already the better order


def test_simplification_leaves_fused_groups_as_they_are():
    """After fusion there is nothing left to simplify: the passes copy fused nodes (their
    bodies and any extra attributes) unchanged."""
    model = dlc.nn.Sequential(dlc.nn.Linear(4, 6), dlc.nn.ReLU(), dlc.nn.LayerNorm(6))
    fused = run_pipeline(dlc.trace(model, dlc.TensorSpec((3, 4))), "O2",
                         stop_after="fuse").graph
    assert any(n.body is not None for n in fused.nodes)
    again = fused
    for p in (decompose_free, fold, algebra, cse, dce):
        again = p(again)
        dlc.verify(again)
    assert str(again) == str(fused)
