"""Views in the memory plan: index maps every reader can read through take no bytes.

The planner marks them (MemoryPlan.views, `view` in the text form); their root then lives
until the last reader of any view of it. Checked here: which index maps become views and
which do not, liveness through views (the arena run with every read checked equals eager
on fresh inputs), in-place reuse refused where a kernel also reads the value through a
view, the text round trip, the verifier's rules with line:col, and the llvm backend
reading through views of a planned transformer block.
"""
import re

import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from dlc.errors import ParseError
from dlc.ir.plan import live_ranges
from passes.memory import memory_table, plan_memory, run_with_plan
from tests.ops.harness import assert_allclose
from tests.passes.fusion_models import mlp_train_step, random_args

READERS = """graph @readers(%x: f32[4,6] input, %w: f32[6,6] param) {
  %0: f32[4,6] = exp(%x)
  %1: f32[6,4] = permute(%0) {perm = [1, 0]}
  %2: f32[6,6] = matmul(%1, %0)
  %3: f32[6,6] = permute(%w) {perm = [1, 0]}
  %4: f32[6,6] = matmul(%2, %3)
  %5: f32[2,6] = slice(%0) {starts = [1, 0], stops = [3, 6], steps = [1, 1]}
  %6: f32[2,6] = tanh(%5)
  %7: f32[6,4] = permute(%0) {perm = [1, 0]}
  %8: f32[6,4] = neg(%7)
  %9: f32[24] = reshape(%7) {shape = [24]}
  %10: f32[24] = sin(%9)
  return %4, %6, %8, %10
}"""

# %3 reads %0 at (i, j) and, through the views, at (0, j): it must not overwrite %0 in place
HAZARD = """graph @hazard(%x: f32[8,8] input) {
  %0: f32[8,8] = exp(%x)
  %1: f32[1,8] = slice(%0) {starts = [0, 0], stops = [1, 8], steps = [1, 1]}
  %2: f32[8,8] = broadcast_to(%1) {shape = [8, 8]}
  %3: f32[8,8] = add(%0, %2)
  %4: f32[8,8] = tanh(%3)
  return %4
}"""

# the root %0 is read through the view %1 by %3, after %2 is computed
LATE_READ = """graph @late(%x: f32[8,8] input, %y: f32[8,8] input) {
  %0: f32[8,8] = exp(%x)
  %1: f32[8,8] = permute(%0) {perm = [1, 0]}
  %2: f32[8,8] = tanh(%y)
  %3: f32[8,8] = matmul(%2, %1)
  %4: f32[8,8] = add(%3, %2)
  return %4
}"""


def planned(text: str):
    return plan_memory(dlc.parse(text))


def check_arena_run(graph, rng):
    """The planned graph run through its arena, every read checked, equals eager."""
    args = random_args(graph, rng)
    want = run_graph(graph, args)
    got = run_with_plan(graph, args, check=True)
    for a, b in zip(got, want):
        assert not np.isnan(a).any()
        np.testing.assert_array_equal(a, b)


def test_which_index_maps_become_views(rng):
    """A matmul operand (any strides), a param not updated in place, a unit-step slice read
    by a pointwise op: views. A transpose read by a pointwise op (the innermost axis moves)
    is copied, and then a reshape of the copy is a view of it."""
    graph = planned(READERS)
    plan = graph.meta["memory_plan"]

    def described(pos):
        node = graph.nodes[pos]
        src = node.inputs[0]
        return node.op.name, getattr(src, "name", None) or src.op.name, \
            sorted(r.op.name for r in graph.nodes if node in r.inputs)

    assert sorted(described(p) for p in plan.views) == [
        ("permute", "exp", ["matmul"]), ("permute", "w", ["matmul"]),
        ("reshape", "permute", ["sin"]), ("slice", "exp", ["tanh"])]
    text = str(graph)
    assert re.search(r"= permute\(%w\) \{perm = \[1, 0\]\} view", text)
    assert re.search(r"= slice\(%\d+\) \{[^}]*\} view", text)
    copied = [ln for ln in text.splitlines() if "= permute(%" in ln and " view" not in ln]
    assert len(copied) == 1 and "offset(" in copied[0]
    check_arena_run(graph, rng)


def test_a_root_lives_until_the_last_reader_through_its_views(rng):
    graph = planned(LATE_READ)
    plan = graph.meta["memory_plan"]
    (view,) = plan.views
    root = graph.nodes.index(graph.nodes[view].inputs[0])
    reader = next(p for p, n in enumerate(graph.nodes) if n.op.name == "matmul")
    ranges = live_ranges(graph, plan.schedule, plan.views)
    assert ranges[root][1] == ranges[reader][0]  # read through the view at the matmul
    assert live_ranges(graph, plan.schedule)[root][1] < ranges[reader][0]
    tanh = next(p for p, n in enumerate(graph.nodes) if n.op.name == "tanh")
    assert plan.offsets[tanh] != plan.offsets[root]
    check_arena_run(graph, rng)


def test_no_in_place_reuse_of_a_value_also_read_through_a_view(rng):
    graph = planned(HAZARD)
    plan = graph.meta["memory_plan"]
    assert len(plan.views) == 2
    add = next(p for p, n in enumerate(graph.nodes) if n.op.name == "add")
    exp = next(p for p, n in enumerate(graph.nodes) if n.op.name == "exp")
    assert plan.offsets[add] != plan.offsets[exp]
    assert re.search(rf"%{add} .*not in place: .*%{exp} is also read through a view",
                     memory_table(graph))
    assert re.search(r"view +\d+\.\.\d+ +reads %\d+'s bytes \(no copy\)", memory_table(graph))
    check_arena_run(graph, rng)


def test_views_round_trip_through_the_text_and_compile(rng):
    graph = planned(READERS)
    text = str(graph)
    again = dlc.parse(text)
    assert str(again) == text
    assert again.meta["memory_plan"].views == graph.meta["memory_plan"].views
    args = random_args(graph, rng)
    want = run_graph(graph, args)
    for backend in ("eager", "llvm"):
        exe = dlc.compile(dlc.parse(text), backend=backend, params={"w": args[1]})
        got = exe(args[0])
        for a, b in zip(got, want):  # sums of products: error scales with the largest term
            assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


def edited(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_col(text: str, needle: str) -> tuple[int, int]:
    at = text.index(needle)
    return text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)


def assert_rejected(text: str, at: str, pattern: str) -> None:
    """Parsing the edited text fails at the line of `at`, citing the rule."""
    with pytest.raises(ParseError) as info:
        dlc.parse(text, "edited.dlc")
    line, _ = line_col(text, at)
    assert info.value.line == line, str(info.value)
    assert str(info.value).startswith(f"edited.dlc:{line}:"), str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


def offset_of(text: str, op: str) -> str:
    return re.search(rf"= {op}\(.*?(offset\(\d+\))", text).group(1)


def test_verifier_rejects_bad_views():
    text = str(planned(HAZARD))
    # a kernel marked as a view
    tanh_line = next(ln for ln in text.splitlines() if "= exp(" in ln)
    bad = edited(text, tanh_line, re.sub(r"offset\(\d+\)", "view", tanh_line))
    assert_rejected(bad, "= exp(", r"planned as a view, but only an index map .*"
                                   r"\(rule: views name index maps\)")
    # taking the bytes of a value also read through a view
    add_line = next(ln for ln in text.splitlines() if "= add(" in ln)
    bad = edited(text, add_line, add_line.replace(offset_of(text, "add"), offset_of(text, "exp")))
    assert_rejected(bad, "= add(", r"overlaps .*\(rule: values live at the same step must "
                                   r"not overlap\)")
    # a root overwritten before its last reader through the view
    late = str(planned(LATE_READ))
    tanh_line = next(ln for ln in late.splitlines() if "= tanh(" in ln)
    bad = edited(late, tanh_line, tanh_line.replace(offset_of(late, "tanh"),
                                                    offset_of(late, "exp")))
    assert_rejected(bad, "= tanh(", r"overlaps .*exp.* live at steps 0\.\.3")
    # an index map with an offset and `view` both does not parse
    slice_line = next(ln for ln in text.splitlines() if "= slice(" in ln)
    with pytest.raises(ParseError):
        dlc.parse(edited(text, slice_line, slice_line.replace(" view", " offset(0) view")))


def test_verifier_rejects_a_view_of_an_output():
    """An output's array is the caller's: a view may not be rooted there."""
    text = """graph @g(%x: f32[4,6] input) memory {arena_bytes = 0, alignment = 64} {
  %0: f32[4,6] = exp(%x)
  %1: f32[6,4] = permute(%0) {perm = [1, 0]} view
  %2: f32[6,6] = matmul(%1, %0)
  return %0, %2
}"""
    assert_rejected(text, "= permute(", r"is a view of the graph output %0 .*"
                                        r"\(rule: a view's bytes stay\)")
    outputs = text.replace("return %0, %2", "return %2, %1")
    assert_rejected(outputs, "= permute(", r"is a graph output, which gets its own array, "
                                           r"yet is planned as a view")


def test_verifier_rejects_a_view_of_a_parameter_updated_in_place():
    text = str(plan_memory(mlp_train_step()))
    line = next(ln for ln in text.splitlines() if re.search(r"= permute\(%\w+\.weight\)", ln)
                and "offset(" in ln)
    bad = edited(text, line, re.sub(r"offset\(\d+\)", "view", line))
    assert_rejected(bad, line.strip()[:30], r"is a view of %\S+, which an in-place update "
                                            r"overwrites \(rule: a view's bytes stay\)")


def test_views_of_a_transformer_block_on_llvm(rng):
    """The attention's head split and merge (slices, reshapes, permutes) are all views:
    only kernels that compute remain, and the llvm backend reading through the views of
    the planned graph agrees with eager."""
    from dlc import nn
    dlc.nn.init.manual_seed(int(rng.integers(2**31)))
    block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0)
    block.eval()
    graph = dlc.trace(block, dlc.TensorSpec((6, 3, 32)))
    from dlc.compiler import optimized_graph
    og = optimized_graph(graph)
    plan = og.meta["memory_plan"]
    maps = [p for p, n in enumerate(og.nodes) if n.op.name in ("permute", "reshape", "slice")]
    assert maps and set(maps) <= set(plan.views)
    x = rng.standard_normal((6, 3, 32)).astype(np.float32)
    want = dlc.compile(graph, backend="eager")(x)
    got = dlc.compile(graph, backend="llvm")(x)
    assert_allclose(got, want, rtol=1e-5, atol=1e-5)
