"""Multi-output fused groups, with passes.fuse.MULTI_OUTPUT turned on: golden text for the two
decisions (multi_output: an Adam update as one kernel writing p', m' and v'; horizontal: two
independent small chains as one kernel), what is refused and why (a cycle through an outside
reader, a dependence through another kernel, groups far apart, no gain, too many outputs),
and on fresh random inputs: the fused graph run by the eager interpreter computes exactly
what the unfused graph computes, its memory plan verifies and runs through its arena exactly
as eager does, a training step still updates every parameter in place and gives the losses
of the switch-off run, step after step, and every example model at O2 matches O0."""
import networkx as nx
import numpy as np
import pytest
import torch

import dlc
import passes.fuse
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.groups import is_result, kernel_count, kernel_of
from dlc.ir.plan import inplace_reuse, live_ranges
from dlc.ir.types import TensorType
from passes.fuse import explain_fusion, fuse
from passes.fuse.multi import HORIZONTAL_WINDOW, MAX_OUTPUTS
from passes.manager import run_pipeline
from passes.memory import plan_memory, run_with_plan
from passes.schedule import schedule
from passes.simplify import dce
from tests.ops.harness import TOL, assert_allclose
from tests.passes.fusion_models import cnn_train_step, mlp_train_step, random_args
from tests.passes.test_fuse import DIAMOND, random_graph
from tests.passes.test_numerics_matrix import (assert_matches, example_files, load_example,
                                               random_input, run_at)

F32 = "float32"


@pytest.fixture
def on(monkeypatch):
    monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", True)


def fused_nodes(graph):
    return [n for n in graph.nodes if n.body is not None]


def assert_same(a, b, args):
    """Bit-identical outputs: fusion changes no arithmetic inside a kernel."""
    for x, y in zip(run_graph(a, args), run_graph(b, args)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.dtype.kind != "f" or not np.isnan(y).any()
        np.testing.assert_array_equal(x, y)


def T(*shape):
    return TensorType(shape, F32)


# -- golden text -----------------------------------------------------------------------------
ADAM = """graph @adam(%p: f32[4,3] param, %g: f32[4,3] input, %m: f32[4,3] state, %v: f32[4,3] state) {
  %0: f32[] = full() {shape = [], value = 0.9, dtype = f32}
  %1: f32[4,3] = mul(%m, %0)
  %2: f32[4,3] = add(%1, %g)
  %3: f32[4,3] = mul(%g, %g)
  %4: f32[4,3] = add(%v, %3)
  %5: f32[4,3] = sqrt(%4)
  %6: f32[4,3] = div(%2, %5)
  %7: f32[4,3] = sub(%p, %6)
  return %7, %2, %4 {aliases = {0 = %p, 1 = %m, 2 = %v}}
}"""

ADAM_FUSED = """graph @adam(%p: f32[4,3] param, %g: f32[4,3] input, %m: f32[4,3] state, %v: f32[4,3] state) {
  %0: f32[4,3] = fused(%m, %g, %v, %p) {name = "fused0_mul_add_sqrt", kind = "pointwise"} {
    ^bb(%a0: f32[4,3], %a1: f32[4,3], %a2: f32[4,3], %a3: f32[4,3]):
      %0: f32[] = full() {shape = [], value = 0.9, dtype = f32}
      %1: f32[4,3] = mul(%a0, %0)
      %2: f32[4,3] = add(%1, %a1)
      %3: f32[4,3] = mul(%a1, %a1)
      %4: f32[4,3] = add(%a2, %3)
      %5: f32[4,3] = sqrt(%4)
      %6: f32[4,3] = div(%2, %5)
      %7: f32[4,3] = sub(%a3, %6)
      yield %7, %2, %4
  }
  %1: f32[4,3] = result(%0) {index = 1}
  %2: f32[4,3] = result(%0) {index = 2}
  return %0, %1, %2 {aliases = {0 = %p, 1 = %m, 2 = %v}}
}"""

TWO_CHAINS = """graph @two(%x: f32[4,8] input, %y: f32[4,8] input) {
  %0: f32[4,8] = exp(%x)
  %1: f32[4,8] = neg(%0)
  %2: f32[4,8] = tanh(%y)
  %3: f32[4,8] = relu(%2)
  return %1, %3
}"""

TWO_CHAINS_FUSED = """graph @two(%x: f32[4,8] input, %y: f32[4,8] input) {
  %0: f32[4,8] = fused(%x, %y) {name = "fused0_exp_neg_tanh", kind = "pointwise"} {
    ^bb(%a0: f32[4,8], %a1: f32[4,8]):
      %0: f32[4,8] = exp(%a0)
      %1: f32[4,8] = neg(%0)
      %2: f32[4,8] = tanh(%a1)
      %3: f32[4,8] = relu(%2)
      yield %1, %3
  }
  %1: f32[4,8] = result(%0) {index = 1}
  return %0, %1
}"""


def test_the_switch_is_on_by_default_and_turns_off(monkeypatch):
    assert passes.fuse.MULTI_OUTPUT is True
    monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", False)
    fused = fuse(dlc.parse(ADAM))
    assert len(fused.nodes) == 3 and not any(is_result(n) for n in fused.nodes)
    assert {r.reason for r in fused.meta["fusion_log"].not_fused()} == {"graph_output"}


def test_adam_update_is_one_kernel(on, rng):
    graph = dlc.parse(ADAM)
    fused = fuse(graph)
    assert str(fused) == ADAM_FUSED
    assert str(dlc.parse(ADAM_FUSED)) == ADAM_FUSED
    log = fused.meta["fusion_log"]
    assert (log.kernels_before, log.kernels_after) == (8, 1)
    assert [(r.producer, r.consumer) for r in log.fused() if r.reason == "multi_output"] == \
        [(4, 5), (2, 6)]
    assert not log.not_fused()
    assert "fused0_mul_add_sqrt (pointwise, yields %7, %2, %4)" in explain_fusion(fused)
    args = random_args(graph, rng)
    args[3] = np.abs(args[3])  # a second moment is not negative
    assert_same(graph, fused, args)
    p, g, m, v = (torch.from_numpy(a) for a in args)
    m2, v2 = m * 0.9 + g, v + g * g
    for got, want in zip(run_graph(fused, args), (p - m2 / v2.sqrt(), m2, v2)):
        assert_allclose(got, want.numpy(), *TOL[F32])


def gpu(graph):
    """`graph` compiled for a target where a kernel launch costs (dlc/compiler.py LAUNCHES):
    the only one where small independent kernels merge."""
    graph.meta["launches"] = "costly"
    return graph


def test_two_small_chains_merge_horizontally(on, rng):
    graph = dlc.parse(TWO_CHAINS)
    fused = fuse(gpu(graph))
    assert str(fused) == TWO_CHAINS_FUSED
    (record,) = [r for r in fused.meta["fusion_log"].fused() if r.reason == "horizontal"]
    assert (record.producer, record.consumer) == (1, 3)
    assert "both small (32 elements)" in record.detail
    assert_same(graph, fused, random_args(graph, rng))


def test_small_chains_stay_apart_where_launches_are_cheap(on):
    """On a CPU target a small kernel is a plain call: merging the chains buys nothing."""
    fused = fuse(dlc.parse(TWO_CHAINS))
    assert not [r for r in fused.meta["fusion_log"].fused() if r.reason == "horizontal"]
    assert kernel_count(fused.nodes) == 2


def test_fuse_is_idempotent_with_several_outputs(on):
    once = fuse(dlc.parse(ADAM))
    assert str(fuse(once)) == str(once) == ADAM_FUSED


def test_dce_drops_an_unread_result_with_what_only_it_needed(rng):
    """Without m' among the outputs, its yield goes and v' becomes output 1 (m' stays in
    the body: p' needs it); without the second chain's output, its nodes go too."""
    graph = dlc.parse(ADAM_FUSED)
    graph.outputs, graph.aliases = [graph.outputs[0], graph.outputs[2]], {0: "p", 1: "v"}
    out = dce(graph)
    dlc.verify(out)
    (kernel, extra) = out.nodes
    assert [str(v.type) for v in kernel.body.outputs] == ["f32[4,3]"] * 2
    assert extra.attrs == {"index": 1} and len(kernel.body.nodes) == 8
    args = random_args(graph, rng)
    args[3] = np.abs(args[3])
    assert_same(graph, out, args)
    two = dlc.parse(TWO_CHAINS_FUSED)
    two.outputs = two.outputs[:1]
    (kernel,) = dce(two).nodes
    assert [n.op.name for n in kernel.body.nodes] == ["exp", "neg"]
    assert str(dlc.parse(str(dce(two)))) == str(dce(two))


# -- the multi_output and horizontal rules ---------------------------------------------------
def test_adam_training_step_has_one_kernel_per_parameter_update(on, monkeypatch):
    graph = run_pipeline(mlp_train_step(dlc.optim.Adam(lr=1e-3)), "O1").graph
    fused = fuse(graph)
    dlc.verify(fused)
    updated = {name: fused.outputs[i] for i, name in fused.aliases.items()}
    params = [v.name for v in graph.inputs if v.role == "param"]
    for p in params:
        kernels = {kernel_of(updated[name]) for name in
                   (p, f"optim.exp_avg.{p}", f"optim.exp_avg_sq.{p}")}
        assert len(kernels) == 1, p
        (kernel,) = kernels
        assert kernel.attrs["kind"] == "pointwise" and len(kernel.body.outputs) == 3
        assert len(kernel.inputs) == len(set(kernel.inputs))  # each of g, m, v, p read once
    monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", False)
    before = fuse(graph).meta["fusion_log"].kernels_after
    assert fused.meta["fusion_log"].kernels_after == kernel_count(fused.nodes) \
        <= before - 2 * len(params)


def test_shared_input_merges_big_kernels(on):
    """Two kernels of 65536 elements: merged when they read the same x, not otherwise."""
    with Builder("shared") as b:
        x, y = b.add_input("x", T(256, 256)), b.add_input("y", T(256, 256))
        a, c, d = b.emit("exp", (x,), {}), b.emit("tanh", (x,), {}), b.emit("neg", (y,), {})
    fused = fuse(b.finish([a, c, d]))
    (group,) = fused_nodes(fused)
    assert [n.op.name for n in group.body.nodes] == ["exp", "tanh"]
    (record,) = [r for r in fused.meta["fusion_log"].fused() if r.reason == "horizontal"]
    assert record.detail == "both read %x"
    assert kernel_count(fused.nodes) == 2


def test_groups_joined_through_another_kernel_stay_apart(on, rng):
    """exp -> permute -> tanh: one shape, both small, but tanh depends on exp."""
    with Builder("dependent") as b:
        x = b.add_input("x", T(4, 4))
        a = b.emit("exp", (x,), {})
        c = b.emit("tanh", (b.emit("permute", (a,), {"perm": (1, 0)}),), {})
    graph = b.finish([a, c])
    fused = fuse(graph)
    assert [n.op.name for n in fused.nodes] == ["exp", "permute", "tanh"]
    assert_same(graph, fused, random_args(graph, rng))


@pytest.mark.parametrize("gap,merged", [(8, True), (HORIZONTAL_WINDOW + 8, False)])
def test_groups_far_apart_stay_apart(on, gap, merged):
    with Builder("far") as b:
        x, y, z = (b.add_input(n, T(4, 4)) for n in "xyz")
        a = b.emit("exp", (x,), {})
        for _ in range(gap):  # unrelated work between the two small kernels
            z = b.emit("permute", (z,), {"perm": (1, 0)})
        c = b.emit("tanh", (y,), {})
    fused = fuse(gpu(b.finish([a, c, z])))
    assert any(r.reason == "horizontal" for r in fused.meta["fusion_log"].fused()) == merged
    assert kernel_count(fused.nodes) == gap + (1 if merged else 2)


def test_at_most_eight_outputs_per_kernel(on, rng):
    with Builder("many") as b:
        xs = [b.add_input(f"x{i}", T(4, 4)) for i in range(12)]
        outs = [b.emit("neg", (b.emit("exp", (x,), {}),), {}) for x in xs]
    graph = gpu(b.finish(outs))
    fused = fuse(graph)
    assert sorted(len(n.body.outputs) for n in fused_nodes(fused)) == [4, MAX_OUTPUTS]
    assert_same(graph, fused, random_args(graph, rng))


def test_no_cycle_through_an_outside_reader(on, rng):
    """exp is read by add and by a permute that feeds add: as an extra output of add's
    kernel it would both feed that kernel through the permute and come out of it."""
    graph = dlc.parse(DIAMOND)
    fused = fuse(graph)
    assert [n.op.name for n in fused.nodes] == ["exp", "permute", "add"]
    (cycle,) = fused.meta["fusion_log"].not_fused("cycle")
    assert "not an extra output: another kernel reads it and leads into the group" in \
        cycle.detail
    assert nx.is_directed_acyclic_graph(fused.to_networkx())
    assert_same(graph, fused, random_args(graph, rng))


def test_random_graphs(on, rng):
    """Fused, verified, acyclic, bit-identical; printed and parsed back; planned, and run
    through the arena with every read checked."""
    results = 0
    for _ in range(40):
        graph = random_graph(rng)
        fused = fuse(graph)
        dlc.verify(fused)
        assert nx.is_directed_acyclic_graph(fused.to_networkx())
        args = [rng.uniform(-1, 1, (4, 4)).astype(np.float32) for _ in graph.inputs]
        assert_same(graph, fused, args)
        assert str(dlc.parse(str(fused))) == str(fused)
        planned = plan_memory(schedule(fused))
        dlc.verify(planned)
        for x, y in zip(run_graph(graph, args), run_with_plan(planned, args, check=True)):
            np.testing.assert_array_equal(x, y)
        results += sum(is_result(n) for n in fused.nodes)
    assert results > 20  # the graphs do exercise several outputs


# -- memory planning -------------------------------------------------------------------------
def two_output_kernel():
    """Transposes %0, %1 die in one pointwise kernel yielding %2 and %3 (both transposed
    again): each output of the kernel can take the buffer of one of them."""
    with Builder("two_out") as b:
        x, y = b.add_input("x", T(8, 8)), b.add_input("y", T(8, 8))
        m0, m1 = (b.emit("permute", (v,), {"perm": (1, 0)}) for v in (x, y))
        s = b.emit("add", (m0, m1), {})
        t = b.emit("mul", (s, m1), {})
        outs = [b.emit("permute", (v,), {"perm": (1, 0)}) for v in (s, t)]
    return b.finish(outs)


def test_result_values_live_from_their_kernel_and_reuse_inputs(on, rng):
    graph = two_output_kernel()
    planned = plan_memory(fuse(graph))
    dlc.verify(planned)
    nodes = planned.nodes
    (kernel,) = [n for n in fused_nodes(planned) if len(n.body.outputs) == 2]
    (extra,) = [n for n in nodes if is_result(n)]
    k, r = nodes.index(kernel), nodes.index(extra)
    assert r == k + 1  # the scheduler keeps it with its kernel
    ranges = live_ranges(planned, list(range(len(nodes))))
    assert ranges[r][0] == ranges[k][0] == k
    reuse = inplace_reuse(planned, planned.meta["memory_plan"])
    takes = {reuse.get(k), reuse.get(r)}
    assert takes == {nodes.index(v) for v in kernel.inputs if v in nodes}  # one input each
    args = random_args(graph, rng)
    for x, y in zip(run_graph(graph, args), run_with_plan(planned, args, check=True)):
        np.testing.assert_array_equal(x, y)


def test_plan_verifier_knows_a_result_is_written_with_its_kernel(on):
    """Give the result node the bytes of a value still live when its kernel runs (the
    kernel's own output): the verifier names the overlap at the edited offset."""
    planned = plan_memory(fuse(two_output_kernel()))
    text = str(planned)
    lines = text.splitlines()
    kernel = next(i for i, line in enumerate(lines) if 'kind = "pointwise"' in line)
    result = next(i for i, line in enumerate(lines) if "= result(" in line)
    own = lines[kernel].split(" offset(")[1].split(")")[0]
    head, tail = lines[result].split(" offset(")
    lines[result] = f"{head} offset({own}){tail[tail.index(')') + 1:]}"
    with pytest.raises(dlc.ParseError, match="overlaps") as info:
        dlc.parse("\n".join(lines))
    assert info.value.line == result + 1


@pytest.mark.parametrize("make", [mlp_train_step, cnn_train_step], ids=["mlp", "cnn"])
def test_training_step_updates_in_place_with_the_same_losses(make, rng, monkeypatch):
    """The O2 graph with and without multi-output kernels, each run for three steps
    through its arena (every read checked), each step from the last one's parameters:
    the same losses and parameters bit for bit, every parameter and moment updated in
    place, result nodes right after their kernel."""
    step = make(dlc.optim.Adam(lr=1e-2))
    planned = {}
    for switch in (False, True):
        monkeypatch.setattr(passes.fuse, "MULTI_OUTPUT", switch)
        planned[switch] = run_pipeline(step, "O2", verify=True).graph
    graph = planned[True]
    plan = graph.meta["memory_plan"]
    assert set(plan.inplace.values()) == {v.name for v in step.inputs
                                         if v.role in ("param", "state")}
    for pos, node in enumerate(graph.nodes):  # every result right after its kernel
        if is_result(node):
            kernel = graph.nodes.index(node.inputs[0])
            assert all(is_result(n) for n in graph.nodes[kernel + 1:pos])
    assert kernel_count(graph.nodes) < kernel_count(planned[False].nodes)
    state = {switch: random_args(g, np.random.default_rng(0)) for switch, g in planned.items()}
    for _ in range(3):
        batch = {v.name: random_input(rng, v.type) for v in step.user_inputs}
        outs = {}
        for switch, g in planned.items():
            args = [batch[v.name] if v.role == "input" else a
                    for v, a in zip(g.inputs, state[switch])]
            outs[switch] = run_with_plan(g, args, check=True)
            new = {g.aliases[i]: o for i, o in enumerate(outs[switch]) if i in g.aliases}
            state[switch] = [new.get(v.name, a) for v, a in zip(g.inputs, args)]
        for a, b in zip(outs[False], outs[True]):
            np.testing.assert_array_equal(a, b)
        assert np.isfinite(outs[True][0]).all()


# -- numerics: O2 with several outputs per kernel matches O0 ---------------------------------
@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_model_matches_o0(on, path, rng):
    model, specs = load_example(path)
    graph = dlc.trace(model, *specs)
    args = [random_input(rng, v.type) for v in graph.user_inputs]
    assert_matches(run_at(graph, "O2", args), run_at(graph, "O0", args), f"{path.name} at O2")


def test_training_step_matches_o0(on, rng):
    dlc.nn.init.manual_seed(int(rng.integers(1 << 30)))
    step = mlp_train_step(dlc.optim.Adam(lr=1e-2))
    exes = {level: dlc.compile(step, opt_level=level) for level in ("O0", "O2")}
    assert any(is_result(n) for n in exes["O2"].graph.nodes)
    for _ in range(3):
        x = rng.standard_normal((8, 32)).astype(np.float32)
        y = rng.integers(0, 5, 8).astype(np.int64)
        assert_matches([np.asarray(exes["O2"](x, y))], [np.asarray(exes["O0"](x, y))], "loss")
    got, want = exes["O2"].state_dict(), exes["O0"].state_dict()
    assert_matches(list(got.values()), list(want.values()), "parameters")
