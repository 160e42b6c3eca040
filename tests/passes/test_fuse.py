"""passes.fuse: golden text per pattern (input IR, fuse, expected IR), the row-reduction ops
as one kernel each against torch, the reasons recorded for what is not fused (a diamond
whose fusion would make a cycle), and numerics: a fused graph run by the eager interpreter
computes exactly what the unfused graph computes, on example models, training steps and
random graphs."""
import networkx as nx
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.groups import check_body, kernel_count
from dlc.ir.types import TensorType
from passes.decompose import decompose
import passes.fuse
from passes.fuse import explain_fusion, fuse
from tests.ops.harness import TOL, assert_allclose
from tests.passes.fusion_models import (cnn_train_step, example_files, example_graph,
                                        mlp_train_step, random_args)

F32 = "float32"


def fused_nodes(graph):
    return [n for n in graph.nodes if n.body is not None]


def assert_same(a, b, args):
    """Bit-identical outputs (fusion reorders nothing inside a kernel's arithmetic)."""
    for x, y in zip(run_graph(a, args), run_graph(b, args)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert not np.isnan(x).any() if x.dtype.kind == "f" else True
        np.testing.assert_array_equal(x, y)


# -- golden text ----------------------------------------------------------------------------
CHAIN = """graph @chain(%x: f32[4,8] input, %b: f32[8] param) {
  %0: f32[4,8] = add(%x, %b)
  %1: f32[] = full() {shape = [], value = 2.0, dtype = f32}
  %2: f32[4,8] = mul(%0, %1)
  %3: f32[4,8] = tanh(%2)
  %4: f32[4,8] = relu(%3)
  return %4
}"""

CHAIN_FUSED = """graph @chain(%x: f32[4,8] input, %b: f32[8] param) {
  %0: f32[4,8] = fused(%x, %b) {name = "fused0_add_mul_tanh", kind = "pointwise"} {
    ^bb(%a0: f32[4,8], %a1: f32[8]):
      %0: f32[] = full() {shape = [], value = 2.0, dtype = f32}
      %1: f32[4,8] = add(%a0, %a1)
      %2: f32[4,8] = mul(%1, %0)
      %3: f32[4,8] = tanh(%2)
      %4: f32[4,8] = relu(%3)
      yield %4
  }
  return %0
}"""

LINEAR = """graph @linear(%x: f32[4,3] input, %w: f32[3,5] param, %b: f32[5] param, %r: f32[4,5] input) {
  %0: f32[4,5] = matmul(%x, %w)
  %1: f32[4,5] = add(%0, %b)
  %2: f32[4,5] = relu(%1)
  %3: f32[] = full() {shape = [], value = 0.5, dtype = f32}
  %4: f32[4,5] = mul(%2, %3)
  %5: f32[4,5] = add(%4, %r)
  return %5
}"""

LINEAR_FUSED = """graph @linear(%x: f32[4,3] input, %w: f32[3,5] param, %b: f32[5] param, %r: f32[4,5] input) {
  %0: f32[4,5] = fused(%x, %w, %b, %r) {name = "fused0_matmul_add_relu", kind = "contraction"} {
    ^bb(%a0: f32[4,3], %a1: f32[3,5], %a2: f32[5], %a3: f32[4,5]):
      %0: f32[4,5] = matmul(%a0, %a1)
      %1: f32[] = full() {shape = [], value = 0.5, dtype = f32}
      %2: f32[4,5] = add(%0, %a2)
      %3: f32[4,5] = relu(%2)
      %4: f32[4,5] = mul(%3, %1)
      %5: f32[4,5] = add(%4, %a3)
      yield %5
  }
  return %0
}"""


@pytest.mark.parametrize("before,after", [(CHAIN, CHAIN_FUSED), (LINEAR, LINEAR_FUSED)],
                         ids=["pointwise_chain", "matmul_bias_relu_scale_residual"])
def test_golden(before, after, rng):
    graph = dlc.parse(before)
    fused = fuse(graph)
    assert str(fused) == after
    assert str(dlc.parse(after)) == after
    assert_same(graph, fused, random_args(graph, rng))


def test_pointwise_chain_against_torch(rng):
    graph = dlc.parse(CHAIN)
    x, b = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal(8).astype(
        np.float32)
    got = run_graph(fuse(graph), [x, b])[0]
    want = torch.relu(torch.tanh((torch.from_numpy(x) + torch.from_numpy(b)) * 2.0))
    assert_allclose(got, want.numpy(), *TOL[F32])


def test_matmul_epilogue_against_torch(rng):
    graph = fuse(dlc.parse(LINEAR))
    args = [rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs]
    x, w, b, r = (torch.from_numpy(a) for a in args)
    want = torch.relu(x @ w + b) * 0.5 + r
    assert_allclose(run_graph(graph, args)[0], want.numpy(), *TOL[F32])


def test_conv_bias_relu_is_one_contraction_group(rng):
    model = dlc.nn.Sequential(dlc.nn.Conv2d(2, 3, 3, padding=1), dlc.nn.ReLU())
    graph = dlc.trace(model, dlc.TensorSpec((2, 2, 5, 5)))
    fused = fuse(graph)
    (group,) = fused_nodes(fused)
    assert len(fused.nodes) == 1 and group.attrs["kind"] == "contraction"
    assert group.body.nodes[0].op.name == "conv"
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    state = model.state_dict()
    want = torch.relu(torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(state["0.weight"]),
        torch.from_numpy(state["0.bias"]), padding=1))
    got = run_graph(fused, [x] + [v.data for v in fused.inputs[1:]])[0]
    assert_allclose(got, want.numpy(), *TOL[F32])


# -- the row-reduction ops: one kernel each -------------------------------------------------
def _torch_rms_norm(x, eps):
    x64 = x.double()
    return (x64 * torch.rsqrt((x64 * x64).mean(-1, keepdim=True) + eps)).float()


ROW_OPS = [
    ("softmax", {"axis": -1}, lambda x, y: torch.softmax(x, -1)),
    ("log_softmax", {"axis": -1}, lambda x, y: torch.log_softmax(x, -1)),
    ("layer_norm", {"axes": (1,), "eps": 1e-5},
     lambda x, y: torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=1e-5)),
    ("rms_norm", {"axes": (1,), "eps": 1e-5}, lambda x, y: _torch_rms_norm(x, 1e-5)),
    ("cross_entropy", {}, lambda x, y: torch.nn.functional.cross_entropy(x, y)),
]


@pytest.mark.parametrize("op,attrs,oracle", ROW_OPS, ids=[r[0] for r in ROW_OPS])
def test_row_reduction_is_one_kernel(op, attrs, oracle, rng):
    labels = op == "cross_entropy"
    with Builder(op) as b:
        x = b.add_input("x", TensorType((6, 10), F32))
        ins = (x, b.add_input("y", TensorType((6,), "int64"))) if labels else (x,)
        out = b.emit(op, ins, attrs)
    graph = b.finish([out])
    fused = fuse(graph)
    (group,) = fused.nodes
    assert group.body is not None and group.attrs["kind"] == "reduction"
    assert check_body("reduction", group.body) is None
    log = fused.meta["fusion_log"]
    assert log.kernels_before == len(decompose(graph).nodes) > 1 and log.kernels_after == 1
    x = rng.standard_normal((6, 10)).astype(np.float32)
    args = [x, rng.integers(0, 10, 6).astype(np.int64)] if labels else [x]
    got = run_graph(fused, args)[0]
    want = oracle(*[torch.from_numpy(a) for a in args], *([None] if not labels else []))
    assert_allclose(got, want.numpy(), *TOL[F32])
    assert_same(decompose(graph), fused, args)


# -- what is not fused, and why --------------------------------------------------------------
DIAMOND = """graph @diamond(%x: f32[4,4] input) {
  %0: f32[4,4] = exp(%x)
  %1: f32[4,4] = permute(%0) {perm = [1, 0]}
  %2: f32[4,4] = add(%0, %1)
  return %2
}"""


def test_diamond_is_not_fused_into_a_cycle(rng):
    """exp -> add directly and exp -> permute -> add: putting exp in add's kernel would make
    the kernels exp+add -> permute -> exp+add a cycle."""
    graph = dlc.parse(DIAMOND)
    fused = fuse(graph)
    assert [n.op.name for n in fused.nodes] == ["exp", "permute", "add"]
    log = fused.meta["fusion_log"]
    (cycle,) = log.not_fused("cycle")
    assert (cycle.producer, cycle.consumer) == (0, 2)
    assert (cycle.producer_op, cycle.consumer_op) == ("exp", "add")
    assert "%1 permute reads it and leads to %2 add" in cycle.detail
    assert nx.is_directed_acyclic_graph(fused.to_networkx())
    assert "cycle: %1 permute reads it" in explain_fusion(fused)
    assert_same(graph, fused, random_args(graph, rng))


@pytest.mark.parametrize("text,reason,edges", [
    ("""graph @g(%x: f32[4,4] input) {
  %0: f32[4,4] = exp(%x)
  %1: f32[4,4] = neg(%0)
  %2: f32[4,4] = log(%0)
  return %1, %2
}""", "multi_use", [(0, 2), (0, 1)]),
    ("""graph @g(%x: f32[4,4] input, %w: f32[4,4] param) {
  %0: f32[4,4] = relu(%x)
  %1: f32[4,4] = matmul(%0, %w)
  return %1
}""", "contraction_operand", [(0, 1)]),
    ("""graph @g(%x: f32[4,4] input, %w: f32[4,4] param, %b: f32[3,4,4] input) {
  %0: f32[4,4] = matmul(%x, %w)
  %1: f32[3,4,4] = add(%0, %b)
  return %1
}""", "epilogue_shape", [(0, 1)]),
    ("""graph @g(%x: f32[4,4] input, %w: f32[4,4] param) {
  %0: f32[4,4] = matmul(%x, %w)
  %1: f32[4] = sum(%0) {axes = [1]}
  return %1
}""", "contraction_into_reduction", [(0, 1)]),
    ("""graph @g(%x: f32[4,4] input) {
  %0: f32[4,4] = exp(%x)
  %1: f32[4,4] = neg(%0)
  return %1, %0
}""", "graph_output", [(0, 1)]),
    ("""graph @g(%x: f32[4,4] input) {
  %0: f32[4,4] = exp(%x)
  %1: f32[4,4] = permute(%0) {perm = [1, 0]}
  return %1
}""", "consumer_not_fusible", [(0, 1)]),
    # a loss that also sums a gradient other kernels read: fused, the sum would keep the
    # gradient alive until the loss runs
    ("""graph @g(%x: f32[4,4] input, %w: f32[4,4] param) {
  %0: f32[4,4] = matmul(%x, %w)
  %1: f32[] = sum(%0) {axes = [0, 1]}
  %2: f32[] = neg(%1)
  %3: f32[4,4] = neg(%0)
  return %2, %3
}""", "reduction_of_shared_input", [(1, 2)]),
])
def test_reasons_not_fused(text, reason, edges, rng, monkeypatch):
    # one output per kernel: the reasons of single-output fusion (multi-output kernels take
    # the multi_use and graph_output cases: tests/passes/test_multi_output.py)
    monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", False)
    graph = dlc.parse(text)
    fused = fuse(graph)
    assert not fused_nodes(fused)
    records = fused.meta["fusion_log"].not_fused(reason)
    assert [(r.producer, r.consumer) for r in records] == edges
    assert reason in explain_fusion(fused)
    assert_same(graph, fused, random_args(graph, rng))


def test_explain_fusion_report():
    fused = fuse(dlc.parse(LINEAR))
    text = explain_fusion(fused)
    assert text.startswith("fusion of @linear: 6 kernels -> 1 (1 fused groups")
    assert "fused0_matmul_add_relu (contraction): %0 matmul, %1 add, %2 relu, %4 mul, " \
           "%5 add" in text
    assert "fused      %0 matmul -> %1 add" in text and "contraction_epilogue" in text
    assert "recompute" in text  # the scalar 0.5, copied into the kernel
    assert "no fusion log" in explain_fusion(dlc.parse(LINEAR))


def test_fuse_is_idempotent():
    once = fuse(dlc.parse(LINEAR))
    assert str(fuse(once)) == str(once)
    assert fuse(once).meta["fusion_log"].not_fused("not_fusible") == []


# -- numerics on models ---------------------------------------------------------------------
@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_model_fuses(path):
    """Every example model: fewer kernels, every group valid for its kind, the log counts
    right. (Numerics: test_memory.test_example_models runs the fused, planned model through
    its arena and compares it bit for bit with the unfused model.)"""
    graph = example_graph(path)
    fused = fuse(graph)
    dlc.verify(fused)
    log = fused.meta["fusion_log"]
    assert log.kernels_before == len(decompose(graph).nodes) and log.nodes_given == len(
        graph.nodes)
    assert log.kernels_after == kernel_count(fused.nodes) < log.kernels_before
    assert len(log.groups) == len(fused_nodes(fused)) > 0
    assert nx.is_directed_acyclic_graph(fused.to_networkx())


def test_mlp_example_against_torch(rng):
    path = next(p for p in example_files() if p.stem == "mlp")
    fused = fuse(example_graph(path))
    assert len(fused.nodes) == 6  # 3 weight transposes, 3 matmul+bias(+relu) kernels
    assert [n.attrs["kind"] for n in fused_nodes(fused)] == ["contraction"] * 3
    args = random_args(fused, rng)
    p = {v.name: torch.from_numpy(a) for v, a in zip(fused.inputs, args)}
    h = torch.relu(p["images"] @ p["fc1.weight"].T + p["fc1.bias"])
    h = torch.relu(h @ p["fc2.weight"].T + p["fc2.bias"])
    want = h @ p["fc3.weight"].T + p["fc3.bias"]
    assert_allclose(run_graph(fused, args)[0], want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [mlp_train_step, cnn_train_step], ids=["mlp", "cnn"])
def test_training_step_fused_equals_unfused(make, rng):
    graph = make()
    fused = fuse(graph)
    dlc.verify(fused)
    log = fused.meta["fusion_log"]
    assert log.kernels_after == kernel_count(fused.nodes) < log.kernels_before / 2
    assert fused.aliases == graph.aliases and fused.meta.get("train_step")
    assert_same(decompose(graph), fused, random_args(graph, rng))


# -- random graphs ---------------------------------------------------------------------------
UNARY = ["exp", "neg", "tanh", "relu", "sigmoid", "abs"]
BINARY = ["add", "mul", "sub", "maximum"]


def random_graph(rng, size: int = 14):
    """A random DAG over one shape: pointwise ops, row sums broadcast back, matmuls and
    transposes, several outputs."""
    n = 4
    with Builder("random") as b:
        values = [b.add_input(f"x{i}", TensorType((n, n), F32)) for i in range(2)]
        for _ in range(size):
            pick = lambda: values[int(rng.integers(len(values)))]  # noqa: E731
            choice = int(rng.integers(6))
            if choice == 0:
                v = b.emit(UNARY[int(rng.integers(len(UNARY)))], (pick(),), {})
            elif choice in (1, 2):
                v = b.emit(BINARY[int(rng.integers(len(BINARY)))], (pick(), pick()), {})
            elif choice == 3:
                s = b.emit("sum", (pick(),), {"axes": (1,), "keepdims": True})
                v = b.emit("sub", (pick(), s), {})
            elif choice == 4:
                v = b.emit("matmul", (pick(), pick()), {})
            else:
                v = b.emit("permute", (pick(),), {"perm": (1, 0)})
            values.append(v)
        outs = [values[-1]] + [values[int(i)] for i in rng.integers(2, len(values), 2)]
    return b.finish(outs)


def test_random_graphs(rng):
    for _ in range(40):
        graph = random_graph(rng)
        fused = fuse(graph)
        dlc.verify(fused)  # every group follows its kind's rules
        assert nx.is_directed_acyclic_graph(fused.to_networkx())
        args = [rng.uniform(-1, 1, (4, 4)).astype(np.float32) for _ in graph.inputs]
        assert_same(graph, fused, args)
        assert str(dlc.parse(str(fused))) == str(fused)
