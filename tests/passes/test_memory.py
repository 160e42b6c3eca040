"""passes.memory: plans that meet the targets (arena <= 1.10 x the lower bound on every
example model and training step; a CNN training step's arena <= 0.5 x naive), computed
through the arena exactly as the eager interpreter computes without one, in-place reuse and
in-place parameter updates with their reasons, and the plan verifier rejecting overlapping
buffers, a too-small arena and the rest of its rules."""
import copy

import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from dlc.errors import DlcError, VerifyError
from dlc.ir.builder import Builder
from dlc.ir.plan import inplace_reuse, live_ranges
from dlc.ir.types import TensorType
from passes.decompose import decompose
from passes.fuse import fuse
from passes.memory import memory_table, plan_memory, plot_memory, run_with_plan
from passes.memory.schedule import peak_bytes
from tests.ops.harness import TOL, assert_allclose
from tests.passes.fusion_models import (cnn_train_step, example_files, example_graph,
                                        mlp_train_step, random_args)

F32 = "float32"


def T(*shape):
    return TensorType(shape, F32)


def assert_same(graph, planned, args):
    """The planned graph, run through its arena with every read checked against what was
    written, gives bit-identical outputs to the primitives of `graph` run by the eager
    interpreter (and close ones to `graph` itself: a composite op's numpy reference may
    round differently from its primitives)."""
    want = run_graph(decompose(graph), args)
    for x, y, z in zip(want, run_with_plan(planned, args, check=True), run_graph(graph, args)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
        assert_allclose(y, z, *TOL.get(str(z.dtype), (0, 0)))
        if x.dtype.kind == "f":
            assert not np.isnan(y).any()


def check_targets(planned):
    plan = planned.meta["memory_plan"]
    assert 0 < plan.lower_bound_bytes <= plan.arena_bytes <= 1.10 * plan.lower_bound_bytes
    assert plan.arena_bytes <= plan.naive_bytes
    return plan


# -- targets and numerics on models ----------------------------------------------------------
@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_models(path, rng):
    """Targets before and after fusion; the fused, planned model (what O2 compiles) run
    through its arena with every read checked equals the unfused model bit for bit."""
    graph = example_graph(path)
    check_targets(plan_memory(graph))
    planned = plan_memory(fuse(graph))
    dlc.verify(planned)
    check_targets(planned)
    args = random_args(graph, rng)
    for x, y in zip(run_graph(decompose(graph), args), run_with_plan(planned, args, check=True)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
        assert x.dtype.kind != "f" or not np.isnan(y).any()


@pytest.mark.parametrize("optimizer", [dlc.optim.SGD(lr=0.1, momentum=0.9),
                                       dlc.optim.Adam(lr=1e-3)], ids=["sgd", "adam"])
def test_mlp_training_step(optimizer, rng):
    graph = mlp_train_step(optimizer)
    planned = plan_memory(fuse(graph))
    plan = check_targets(planned)
    params = {v.name for v in graph.inputs if v.role == "param"}
    assert params <= set(plan.inplace.values())  # every parameter updated in place
    args = random_args(graph, rng)
    assert_same(graph, planned, args)
    # a second step from the first one's results: in-place updates left nothing stale
    first = run_with_plan(planned, args)
    nxt = list(args)
    for i, name in graph.aliases.items():
        nxt[[v.name for v in graph.inputs].index(name)] = first[i]
    assert_same(graph, planned, nxt)


def test_cnn_training_step_halves_memory(rng):
    graph = cnn_train_step()
    planned = plan_memory(fuse(graph))
    plan = check_targets(planned)
    assert plan.arena_bytes <= 0.5 * plan.naive_bytes
    assert_same(graph, planned, random_args(graph, rng))


# -- schedule, reuse, in-place updates -------------------------------------------------------
def two_branches():
    """Two big branches the traced order keeps alive together; each reduces to a scalar."""
    with Builder("branches") as b:
        x = b.add_input("x", T(64, 64))
        a = b.emit("exp", (x,), {})
        c = b.emit("tanh", (x,), {})
        sa = b.emit("sum", (a,), {"axes": (0, 1)})
        sc = b.emit("sum", (c,), {"axes": (0, 1)})
        out = b.emit("add", (sa, sc), {})
    return b.finish([out])


def test_schedule_lowers_the_peak(rng):
    graph = two_branches()
    planned = plan_memory(graph)
    plan = planned.meta["memory_plan"]
    assert peak_bytes(graph, graph.nodes, 64) == 2 * 64 * 64 * 4 + 64
    assert plan.lower_bound_bytes < peak_bytes(graph, graph.nodes, 64)
    assert [n.op.name for n in planned.nodes] == ["exp", "sum", "tanh", "sum", "add"]
    # the big values share their bytes; the two scalar sums live together
    assert plan.schedule == list(range(5)) and plan.arena_bytes == 64 * 64 * 4 + 2 * 64
    assert_same(graph, planned, [rng.standard_normal((64, 64)).astype(np.float32)])


def test_pointwise_chain_reuses_dying_inputs(rng):
    graph = dlc.parse("""graph @chain(%x: f32[16,16] input, %w: f32[16,16] param) {
  %0: f32[16,16] = matmul(%x, %w)
  %1: f32[16,16] = exp(%0)
  %2: f32[16,16] = neg(%1)
  %3: f32[16,16] = mul(%2, %0)
  %4: f32[16] = sum(%3) {axes = [1]}
  return %4
}""")
    planned = plan_memory(graph)
    plan = planned.meta["memory_plan"]
    # exp cannot take the matmul's buffer (mul reads it later); neg takes exp's; mul takes
    # the one of whichever input dies at it
    assert inplace_reuse(planned, plan) == {2: 1, 3: 2}
    assert plan.offsets[1] == plan.offsets[2] == plan.offsets[3] != plan.offsets[0]
    table = memory_table(planned)
    assert "in place of %1" in table and "in place of %2" in table
    assert "not in place: matmul, a contraction op, does not read an input of its own " \
           "shape elementwise" in table
    assert "not in place: no input dies here: %0 is read later (until step 3)" in table
    assert_same(graph, planned, random_args(graph, rng))


def test_update_refused_when_a_reader_needs_the_new_value(rng):
    """%w's update is read by a node that also reads the old %w: no order runs every
    reader of the old value before the writer, so the update is not in place."""
    graph = dlc.parse("""graph @step(%x: f32[4,4] input, %w: f32[4,4] param, %v: f32[4,4] state) {
  %0: f32[4,4] = matmul(%x, %w)
  %1: f32[4,4] = sub(%w, %0)
  %2: f32[4,4] = add(%w, %1)
  %3: f32[4,4] = mul(%v, %0)
  return %2, %1, %3 {aliases = {1 = %w, 2 = %v}}
}""")
    planned = plan_memory(graph)
    plan = planned.meta["memory_plan"]
    assert plan.inplace == {2: "v"}
    table = memory_table(planned)
    assert ("output 1 (%1, f32[4,4], 64 bytes): own array, copied into %w: add reads the old "
            "%w but must run after the update") in table
    assert "output 2 (%3, f32[4,4], 64 bytes): in place into %v" in table
    assert_same(graph, planned, random_args(graph, rng))


def test_memory_table_gives_a_reason_for_every_buffer():
    planned = plan_memory(fuse(mlp_train_step()))
    table = memory_table(planned)
    header, rows = table.split("\n\n")[0], table.split("\n\n")[1].split("\n")[1:]
    assert "x lower bound" in header and "naive" in header
    plan = planned.meta["memory_plan"]
    assert plan.views  # the step's transposed activations are read through
    assert len(rows) == len(plan.offsets) + len(plan.views)
    for row in rows:
        assert any(key in row for key in ("in place of %", "reuses bytes of %",
                                          "not in place: ", "empty", "bytes (no copy)")), row
    assert "in place into %fc1.weight" in table


def test_plot_memory_writes_a_png(tmp_path):
    planned = plan_memory(fuse(mlp_train_step()))
    path = tmp_path / "memory.png"
    plot_memory(planned, str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_reports_need_a_plan():
    graph = dlc.parse("graph @g(%x: f32[2] input) {\n  %0: f32[2] = exp(%x)\n  return %0\n}")
    with pytest.raises(DlcError, match="has no memory plan: run passes.memory.plan_memory"):
        memory_table(graph)


def test_small_and_empty_graphs(rng):
    texts = ["graph @e() {\n  return\n}",
             "graph @id(%x: f32[3] input) {\n  return %x, %x\n}",
             """graph @z(%x: f32[0,3] input, %s: f32[] input) {
  %0: f32[0,3] = exp(%x)
  %1: f32[0,3] = mul(%0, %s)
  %2: f32[] = neg(%s)
  %3: f32[] = exp(%2)
  return %1, %3
}"""]
    for text in texts:
        graph = dlc.parse(text)
        planned = plan_memory(graph)
        dlc.verify(planned)
        assert str(dlc.parse(str(planned))) == str(planned)
        assert_same(graph, planned, random_args(graph, rng))


# -- the plan verifier -----------------------------------------------------------------------
CHAIN = """graph @g(%x: f32[8,8] input, %w: f32[8,8] param) {
  %0: f32[8,8] = matmul(%x, %w)
  %1: f32[8,8] = tanh(%0)
  %2: f32[8,8] = mul(%0, %1)
  %3: f32[8,8] = sub(%w, %2)
  %4: f32[8,8] = matmul(%1, %w)
  %5: f32[8] = sum(%4) {axes = [1]}
  return %5, %3 {aliases = {1 = %w}}
}"""


def planned_chain():
    """Planned: the update of %w waits for the matmul that reads the old %w; mul takes the
    bytes of the matmul result that dies at it."""
    planned = plan_memory(dlc.parse(CHAIN))
    dlc.verify(planned)
    assert [n.op.name for n in planned.nodes] == ["matmul", "tanh", "mul", "matmul", "sub",
                                                  "sum"]
    plan = planned.meta["memory_plan"]
    assert plan.inplace == {1: "w"} and inplace_reuse(planned, plan) == {2: 0}
    return planned


def broken(edit) -> object:
    planned = planned_chain()
    plan = copy.deepcopy(planned.meta["memory_plan"])
    edit(plan)
    planned.meta["memory_plan"] = plan
    return planned


BROKEN = [
    ("overlap", lambda p: p.offsets.update({1: p.offsets[0]}),
     r"%1 \(tanh f32\[8,8\]\) at bytes \[0, 256\) live at steps 1..3 overlaps %0 \(matmul "
     r"f32\[8,8\]\) at bytes \[0, 256\) live at steps 0..2 \(rule: values live at the same "
     r"step must not overlap\)"),
    ("too small", lambda p: setattr(p, "arena_bytes", p.arena_bytes - 64),
     r"needs bytes up to 768, past the arena of 704 bytes \(rule: every buffer fits in the "
     r"arena\)"),
    ("unaligned", lambda p: p.offsets.update({0: p.offsets[0] + 4}),
     r"offset 4 of %0 \(matmul f32\[8,8\]\) is not a multiple of the alignment 64"),
    ("missing offset", lambda p: p.offsets.pop(1), r"%1 \(tanh f32\[8,8\]\) has no offset"),
    ("offset of an output", lambda p: p.offsets.update({4: 0}),
     r"%4 \(sub f32\[8,8\]\) is a graph output, which gets its own array"),
    ("schedule order", lambda p: setattr(p, "schedule", [1, 0, 2, 3, 4, 5]),
     r"%1 \(tanh f32\[8,8\]\) is scheduled before its input %0"),
    ("schedule length", lambda p: setattr(p, "schedule", [0, 1, 2]),
     r"is not an ordering of the 6 nodes"),
    ("alignment", lambda p: setattr(p, "alignment", 48), r"alignment 48 is not a power of two"),
    ("update before a reader", lambda p: setattr(p, "schedule", [0, 1, 2, 4, 3, 5]),
     r"output 1 overwrites %w at step 3 \(%4 \(sub f32\[8,8\]\)\), but %3 \(matmul "
     r"f32\[8,8\]\) reads the old %w later, at step 4 \(rule: an in-place update runs after "
     r"every reader of the old value\)"),
    ("update without alias", lambda p: p.inplace.update({0: "w"}),
     r"output 0 is not an alias of %w"),
]


@pytest.mark.parametrize("edit,pattern", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_plan_verifier_rejects(edit, pattern):
    with pytest.raises(VerifyError, match=pattern):
        dlc.verify(broken(edit))


def test_update_refused_when_its_writer_reads_the_old_value_as_a_whole(rng):
    graph = dlc.parse("""graph @g(%x: f32[8,8] input, %w: f32[8,8] param) {
  %0: f32[8,8] = matmul(%w, %x)
  return %0 {aliases = {0 = %w}}
}""")
    planned = plan_memory(graph)
    assert planned.meta["memory_plan"].inplace == {}
    assert "own array, copied into %w: its writer (matmul) reads the old %w, and only an " \
           "elementwise op or a pointwise group may overwrite what it reads" in \
        memory_table(planned)
    assert_same(graph, planned, random_args(graph, rng))


def test_an_overlapping_plan_computes_wrong_numbers(rng):
    """What the verifier protects against: the arena interpreter, given a plan whose live
    buffers overlap, returns different numbers, and its checked run names the clobbered
    value (so run_with_plan checks plans for real)."""
    graph = dlc.parse(CHAIN)
    args = random_args(graph, rng)
    assert_same(graph, planned_chain(), args)
    bad = broken(lambda p: p.offsets.update({1: p.offsets[0]}))
    assert not np.array_equal(run_graph(graph, args)[0], run_with_plan(bad, args)[0])
    with pytest.raises(DlcError, match=r"step 2 \(mul\) reads %0 \(matmul\), but its bytes "
                                       r"were overwritten after step 0 wrote it"):
        run_with_plan(bad, args, check=True)


def test_a_late_reader_of_an_updated_input_is_caught(rng):
    """An update moved before a reader of the old value: the checked run names it."""
    bad = broken(lambda p: setattr(p, "schedule", [0, 1, 2, 4, 3, 5]))
    with pytest.raises(DlcError, match=r"step 4 \(matmul\) reads input %w, but its bytes "
                                       r"were overwritten"):
        run_with_plan(bad, random_args(bad, rng), check=True)


def test_live_ranges():
    planned = planned_chain()
    assert live_ranges(planned, list(range(6))) == {0: (0, 2), 1: (1, 3), 2: (2, 4),
                                                    3: (3, 5), 4: (4, 4), 5: (5, 5)}
