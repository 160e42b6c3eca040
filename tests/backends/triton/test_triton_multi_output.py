"""Multi-output fused groups on the triton backend (interpreter, conftest.py), against eager.

A pointwise group yielding several values is one kernel that stores each into its own
buffer: the fused node's, then its `result` nodes' (which launch nothing). Checked unplanned
and under dlc.compile's memory plan, with mixed dtypes, with result nodes as graph outputs,
with outputs that take the buffers of the inputs they read (every value is computed before
any is stored), for an opaque group run kernel by kernel and a nested group inlined into its
parent, and for an Adam training step fused with passes.fuse.MULTI_OUTPUT on, whose
parameter and moment updates are written in place. The same kernels also compile for a
real GPU (sm_90, Triton's compiler on the CPU, in a subprocess: see test_triton_gpu_compile).
"""
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlc
import passes.fuse
from backends.eager import run_graph
from backends.registry import compile_graph
from backends.triton import kernel_sources
from backends.triton.gpu_check import compiled_names
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph
from dlc.ir.groups import is_result
from dlc.ir.plan import inplace_reuse
from dlc.ir.types import TensorType
from tests.backends.model_checks import assert_model_close, assert_nan_step_skipped, user_args
from tests.passes.fusion_models import mlp_train_step

ROOT = Path(__file__).resolve().parents[3]
SHAPE = (37, 130)
F32 = TensorType(SHAPE, "float32")


def fused(b: Builder, name: str, kind: str, inputs: list, body_fn) -> list:
    """A fused node yielding what body_fn(builder, body inputs) returns, and one result node
    per extra yield (what passes.fuse emits): [fused node, result 1, ...]."""
    with Builder(name) as inner:
        args = [inner.add_input(f"p{k}", v.type) for k, v in enumerate(inputs)]
        outs = body_fn(inner, args)
    node = b.emit("fused", tuple(inputs), {"name": name, "kind": kind},
                  body=inner.finish(outs))
    return [node] + [b.emit("result", (node,), {"index": i}) for i in range(1, len(outs))]


def three_outputs(b: Builder, a: list) -> list:
    """(x, y[130], z) -> (tanh(x + y) * z, x + y, x + y > z): two floats and a bool, y
    broadcast along the rows."""
    s = b.emit("add", (a[0], a[1]), {})
    t = b.emit("mul", (b.emit("tanh", (s,), {}), a[2]), {})
    return [t, s, b.emit("gt", (s, a[2]), {})]


def three_output_graph(returned: str) -> Graph:
    """The three-output group, its outputs read by a later kernel and returned as `returned`
    says: "mixed" (a later value and the bool result) or "results" (the result nodes only:
    the fused node's own value stays in the arena)."""
    with Builder("three") as b:
        x = b.add_input("x", F32)
        y = b.add_input("y", TensorType(SHAPE[1:], "float32"))
        z = b.add_input("z", F32)
        f, s, mask = fused(b, "three", "pointwise", [x, y, z], three_outputs)
        later = b.emit("mul", (f, s), {})
    return b.finish([later, mask] if returned == "mixed" else [mask, s, later])


def random_inputs(graph: Graph, rng) -> list[np.ndarray]:
    return [rng.standard_normal(v.shape).astype(v.dtype) for v in graph.inputs]


def assert_matches_eager(graph: Graph, exe, arrays: list[np.ndarray]) -> None:
    got = exe(*arrays)
    got = got if isinstance(got, tuple) else (got,)
    want = run_graph(graph, arrays)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.dtype, w.dtype)
        if w.dtype == np.bool_:
            np.testing.assert_array_equal(g, w)
        else:
            assert np.isfinite(g).all()
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def compiled(graph: Graph, planned: bool):
    """Unplanned (one group per top-level node) or through dlc.compile (a memory plan)."""
    return dlc.compile(graph, backend="triton") if planned else compile_graph(graph, "triton")


def group_kernels(exe, group: str) -> list:
    return [k for k in exe.program.kernels if k.group == group]


@pytest.mark.parametrize("planned", [False, True], ids=["unplanned", "planned"])
@pytest.mark.parametrize("returned", ["mixed", "results"])
def test_pointwise_group_is_one_kernel_storing_each_output(returned, planned, rng):
    graph = three_output_graph(returned)
    dlc.verify(graph)
    exe = compiled(graph, planned)
    assert ("memory_plan" in exe.graph.meta) == planned
    (kernel,) = group_kernels(exe, "three")
    positions = {id(n): k for k, n in enumerate(exe.graph.nodes)}
    fused_node = next(n for n in exe.graph.nodes if n.body is not None and
                      n.attrs["name"] == "three")
    results = [n for n in exe.graph.nodes if is_result(n)]
    assert [r.key for r in kernel.outs] == [positions[id(n)] for n in [fused_node] + results]
    assert [r.dtype for r in kernel.outs] == ["float32", "float32", "bool"]
    # result nodes launch nothing: one kernel per other top-level node
    assert len(exe.program.kernels) == len(exe.graph.nodes) - len(results)
    source = kernel_sources(graph)["three"]
    assert source.count("tl.store(") == 3
    assert "group three: f32[37,130], f32[37,130], i1[37,130]" in source
    for _ in range(2):  # fresh inputs on each call, the arena reused
        assert_matches_eager(graph, exe, random_inputs(graph, rng))


def cross_reads(b: Builder, a: list) -> list:
    """Output 0 reads only p1, output 1 only p0: when output 0 takes p0's buffer, p0 must be
    read before output 0 is stored."""
    one = b.emit("full", (), {"shape": (), "value": 1.0, "dtype": "float32"})
    return [b.emit("add", (b.emit("neg", (a[1],), {}), one), {}), b.emit("mul", (a[0], a[0]), {})]


def test_outputs_overwrite_the_inputs_they_read(rng, monkeypatch):
    # the hand-built group as it is: with multi-output fusion on, the pipeline would merge
    # the squares into it, and no arena input would die there
    monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", False)
    with Builder("reuse") as b:
        x, z = b.add_input("x", F32), b.add_input("z", F32)
        xx, zz = b.emit("mul", (x, x), {}), b.emit("mul", (z, z), {})
        f, r = fused(b, "cross", "pointwise", [xx, zz], cross_reads)
        out = b.emit("sub", (f, b.emit("tanh", (r,), {})), {})
    graph = b.finish([out])
    exe = dlc.compile(graph, backend="triton")
    plan_graph = exe.graph
    reuse = inplace_reuse(plan_graph, plan_graph.meta["memory_plan"])
    writers = {k for k, n in enumerate(plan_graph.nodes)
               if is_result(n) or (n.body is not None and n.attrs["name"] == "cross")}
    assert writers <= set(reuse), reuse  # both outputs take a dying input's buffer
    assert len(group_kernels(exe, "cross")) == 1
    for _ in range(2):
        assert_matches_eager(graph, exe, random_inputs(graph, rng))


def opaque_outputs(b: Builder, a: list) -> list:
    """(x) -> (x * 2, row sums of exp(x), softmax(x)): three shapes of work, two of shape."""
    two = b.emit("full", (), {"shape": (), "value": 2.0, "dtype": "float32"})
    e = b.emit("exp", (a[0],), {})
    total = b.emit("sum", (e,), {"axes": (1,), "keepdims": True})
    return [b.emit("mul", (a[0], two), {}), b.emit("reshape", (total,), {"shape": (SHAPE[0],)}),
            b.emit("div", (e, total), {})]


def test_opaque_group_runs_kernel_by_kernel(rng):
    with Builder("opaque") as b:
        x = b.add_input("x", F32)
        outs = fused(b, "mixed_work", "opaque", [x], opaque_outputs)
    graph = b.finish(outs[::-1])
    dlc.verify(graph)
    for planned in (False, True):
        exe = compiled(graph, planned)
        names = [k.name for k in group_kernels(exe, "mixed_work")]
        assert "mixed_work" in names and "mixed_work_out1" in names, names
        assert_matches_eager(graph, exe, random_inputs(graph, rng))


def test_nested_group_is_inlined_with_its_results(rng):
    def outer(b: Builder, a: list) -> list:
        inner, shifted, _ = fused(b, "inner", "pointwise", [a[0], a[1], a[2]], three_outputs)
        # a row max: a reduction kernel, with no summation order to differ from eager's
        return [b.emit("max", (b.emit("mul", (inner, shifted), {}),), {"axes": (1,)})]

    with Builder("nested") as b:
        ins = [b.add_input("x", F32), b.add_input("y", TensorType(SHAPE[1:], "float32")),
               b.add_input("z", F32)]
        (out,) = fused(b, "outer", "opaque", ins, outer)
    graph = b.finish([out])
    dlc.verify(graph)
    assert_matches_eager(graph, compile_graph(graph, "triton"), random_inputs(graph, rng))


@pytest.fixture
def multi_output(monkeypatch):
    monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", True)


def adam_step():
    return mlp_train_step(dlc.optim.Adam(lr=1e-2))


def in_place_results(exe) -> set[int]:
    """Positions of the result nodes the launcher writes into a parameter or state tensor."""
    return {pos for pos in exe.launcher.inplace if is_result(exe.graph.nodes[pos])}


def test_adam_training_step_matches_eager_in_place(multi_output, rng):
    step = adam_step()
    eager = dlc.compile(step)
    triton = dlc.compile(step, backend="triton")
    graph = triton.graph
    multi = [n for n in graph.nodes if n.body is not None and len(n.body.outputs) > 1]
    assert multi, "the fusion pass made no multi-output group"
    positions = {id(n): k for k, n in enumerate(graph.nodes)}
    for node in multi:  # one kernel per update, storing each of its yields
        (kernel,) = [k for k in triton.program.kernels if k.node == positions[id(node)]]
        assert len(kernel.outs) == len(node.body.outputs)
    assert in_place_results(triton)
    written = {graph.inputs[k].name for k in triton.launcher.inplace.values()}
    same = {name: triton.device_state[name] for name in written}
    for _ in range(3):
        batch = user_args(step, rng)
        np.testing.assert_allclose(triton(*batch), eager(*batch), rtol=1e-5)
    assert all(triton.device_state[name] is t for name, t in same.items())
    want, got = eager.state_dict(), triton.state_dict()
    assert want.keys() == got.keys() and want
    for k in want:  # three steps of updates: the same 1e-5 of each tensor's scale
        assert_model_close(got[k], want[k])


def test_nonfinite_loss_leaves_the_state_untouched(multi_output, rng):
    exe = dlc.compile(adam_step(), backend="triton", on_nonfinite="skip")
    assert in_place_results(exe) and exe.launcher.guard is not None
    x, y = user_args(exe.graph, rng)
    exe(x, y)
    assert_nan_step_skipped(exe, x, y, 2)


GPU_SCRIPT = textwrap.dedent("""
    import dlc
    import passes.fuse
    from backends.triton.gpu_check import print_compiled
    from tests.backends.triton.test_triton_multi_output import adam_step, three_output_graph

    passes.fuse.MULTI_OUTPUT = True
    print_compiled([("three", three_output_graph("mixed"), {}),
                    ("three-bf16", three_output_graph("results"),
                     {"mixed_precision": "bfloat16"}),
                    ("adam", adam_step(), {})])
""")


def test_multi_output_kernels_compile_for_sm90(tmp_path):
    names = compiled_names(GPU_SCRIPT, tmp_path, cwd=ROOT)
    assert "three" in names["three"] and "three" in names["three-bf16"]
    assert len(names["adam"]) >= 10
