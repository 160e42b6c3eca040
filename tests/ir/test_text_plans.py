"""The text form of fused and planned graphs: round trips of fused, planned models and
training steps, the grammar document's example, hand edits that pin an offset or un-fuse a
group and still compute the same numbers, and edits the parser and verifier reject with
line:col and the rule broken (a dangling value, a cycle through a fused group, overlapping
offsets, a too-small arena, ...)."""
import os
import re

import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.errors import ParseError
from dlc.ir.graph import Graph
from tests.ir.test_text import build_fused, edit, mutate, roundtrip
from tests.ops.harness import TOL, assert_allclose

F32 = "float32"


def planned(graph: Graph) -> Graph:
    from passes.fuse import fuse
    from passes.memory import plan_memory
    return plan_memory(fuse(graph))


def test_fused_and_planned_models_round_trip(rng):
    """A fused, planned example model and training steps print and parse back to the same
    text, the same plan, and the same numbers through the arena."""
    from passes.memory import run_with_plan
    from tests.passes.fusion_models import (cnn_train_step, example_files, example_graph,
                                            mlp_train_step, random_args)
    mlp = next(p for p in example_files() if p.stem == "mlp")
    for graph in (example_graph(mlp), mlp_train_step(), cnn_train_step()):
        g = planned(graph)
        text = str(g)
        assert "memory {arena_bytes = " in text and " offset(" in text and "fused(" in text
        parsed = roundtrip(g)
        assert parsed.meta["memory_plan"] == g.meta["memory_plan"]
        args = random_args(graph, rng)
        for x, y in zip(run_with_plan(g, args), run_with_plan(parsed, args)):
            np.testing.assert_array_equal(x, y)


def test_grammar_document_example_parses():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "ir-grammar.md"))
    example = re.search(r"## An example\n\n```\n(.*?)```", doc.read(), re.S).group(1)
    graph = dlc.parse(example)
    assert str(graph) == example.split("\n", 2)[2].rstrip()  # less its two comment lines
    assert graph.meta["memory_plan"].inplace == {1: "running_mean"}


PLANNED = """graph @g(
    %x: f32[8,8] input,
    %w: f32[8,8] param,
    %b: f32[8] param
) memory {arena_bytes = 768, alignment = 64, naive_bytes = 1024, lower_bound_bytes = 768, inplace = {1 = %w}} {
  %0: f32[8,8] = fused(%x, %w, %b) {name = "fused0_matmul_add", kind = "contraction"} offset(0) {
    ^bb(%a0: f32[8,8], %a1: f32[8,8], %a2: f32[8]):
      %0: f32[8,8] = matmul(%a0, %a1)
      %1: f32[8,8] = add(%0, %a2)
      yield %1
  }
  %1: f32[8,8] = tanh(%0) offset(256)
  %2: f32[8,8] = mul(%0, %1) offset(0)
  %3: f32[8,8] = matmul(%1, %w) offset(512)
  %4: f32[8,8] = sub(%w, %2)
  %5: f32[8] = sum(%3) {axes = [1], keepdims = false}
  return %5, %4 {aliases = {1 = %w}}
}"""


def planned_oracle(x, w, b):
    """PLANNED in torch, in float64: the loss row sums, the updated %w, and the scale of
    each row sum (the sum of its terms' magnitudes: a float32 sum's error grows with it,
    not with the sum, which cancellation can make small)."""
    x, w, b = (torch.from_numpy(a).double() for a in (x, w, b))
    h = x @ w + b
    t = torch.tanh(h)
    return [(t @ w).sum(1).numpy(), (w - h * t).numpy(), (t.abs() @ w.abs()).sum(1).numpy()]


def planned_args(rng):
    return [rng.standard_normal(s).astype(np.float32) for s in ((8, 8), (8, 8), (8,))]


def check_planned_numbers(graph: Graph, rng) -> None:
    """Through its arena and compiled by eager as it stands, `graph` computes PLANNED."""
    from passes.memory import run_with_plan
    args = planned_args(rng)
    sums, new_w, scale = planned_oracle(*args)
    rtol, atol = TOL[F32]

    def check_sums(got):
        assert np.isfinite(got).all() and got.dtype == np.float32
        assert (np.abs(got - sums) <= rtol * scale + atol).all(), (got, sums)

    for got in (run_with_plan(graph, args), run_graph(graph, args)):
        check_sums(got[0])
        assert_allclose(got[1], new_w.astype(np.float32), rtol, atol)
    exe = dlc.compile(graph, opt_level="O0", params={"w": args[1], "b": args[2]})
    check_sums(exe(args[0]))
    assert_allclose(exe.state["w"], new_w.astype(np.float32), rtol, atol)  # updated in place


def test_planned_text_round_trips(rng):
    graph = dlc.parse(PLANNED)
    assert str(graph) == PLANNED
    plan = graph.meta["memory_plan"]
    assert plan.offsets == {0: 0, 1: 256, 2: 0, 3: 512} and plan.inplace == {1: "w"}
    check_planned_numbers(graph, rng)


def test_hand_edit_pins_an_offset(rng):
    """Move %1 to fresh bytes past the old arena end: the edit verifies and computes."""
    text = edit("arena_bytes = 768", "arena_bytes = 1024",
                edit("tanh(%0) offset(256)", "tanh(%0) offset(768)", PLANNED))
    graph = dlc.parse(text)
    assert graph.meta["memory_plan"].offsets[1] == 768 and str(graph) == text
    check_planned_numbers(graph, rng)


def test_hand_edit_unfuses_a_group(rng):
    """Replace the fused node by its body (block arguments renamed to the operands), drop
    the plan, and plan again: the result computes what the fused graph does."""
    from passes.memory import plan_memory
    region = PLANNED[PLANNED.index("  %0: f32[8,8] = fused"):PLANNED.index("  %1: f32[8,8] = tanh")]
    unfused = PLANNED.replace(region, "  %m: f32[8,8] = matmul(%x, %w)\n"
                                      "  %0: f32[8,8] = add(%m, %b)\n")
    unfused = re.sub(r" offset\(\d+\)", "", unfused)
    unfused = re.sub(r" memory \{.*\} \{", " {", unfused)
    graph = dlc.parse(unfused)
    assert all(n.body is None for n in graph.nodes) and "memory_plan" not in graph.meta
    again = plan_memory(graph)
    assert again.meta["memory_plan"].inplace == {1: "w"}
    check_planned_numbers(roundtrip(again), rng)


BAD_PLANS = [
    # (id, old, new, line, col, a regex the message must match)
    ("overlapping offsets", "tanh(%0) offset(256)", "tanh(%0) offset(0)", 12, 27,
     r"%1 \(tanh f32\[8,8\]\) at bytes \[0, 256\) live at steps 1..3 overlaps %0 \(fused "
     r"f32\[8,8\]\) at bytes \[0, 256\) live at steps 0..2 \(rule: values live at the same "
     r"step must not overlap\)"),
    ("arena too small", "arena_bytes = 768", "arena_bytes = 700", 14, 33,
     r"%3 \(matmul f32\[8,8\]\) at offset 512 needs bytes up to 768, past the arena of 700 "
     r"bytes \(rule: every buffer fits in the arena\)"),
    ("unaligned offset", "offset(512)", "offset(520)", 14, 33,
     r"offset 520 of %3 .* is not a multiple of the alignment 64 \(rule: alignment\)"),
    ("missing offset", "tanh(%0) offset(256)", "tanh(%0)", 12, 3,
     r"%1 \(tanh f32\[8,8\]\) has no offset \(rule: every planned value has an offset\)"),
    ("offset of an output", "sub(%w, %2)", "sub(%w, %2) offset(256)", 15, 30,
     r"%4 \(sub f32\[8,8\]\) is a graph output, which gets its own array"),
    ("update before a reader", "  %3: f32[8,8] = matmul(%1, %w) offset(512)\n"
     "  %4: f32[8,8] = sub(%w, %2)\n", "  %4: f32[8,8] = sub(%w, %2)\n"
     "  %3: f32[8,8] = matmul(%1, %w) offset(512)\n", 5, 102,
     r"output 1 overwrites %w at step 3 \(%4 \(sub f32\[8,8\]\)\), but %3 \(matmul "
     r"f32\[8,8\]\) reads the old %w later, at step 4 \(rule: an in-place update runs after "
     r"every reader of the old value\)"),
    ("update of no alias", "inplace = {1 = %w}", "inplace = {0 = %w}", 5, 102,
     r"inplace output 0 -> %w, but output 0 is not an alias of %w"),
    ("offset without a plan", " memory {arena_bytes = 768, alignment = 64, naive_bytes = "
     "1024, lower_bound_bytes = 768, inplace = {1 = %w}}", "", 6, 87,
     r"offset\(\.\.\.\) without a plan: the graph header needs memory \{arena_bytes"),
    ("offset inside a body", "add(%0, %a2)", "add(%0, %a2) offset(0)", 9, 35,
     r"offset\(\.\.\.\) inside a fused body"),
    ("unknown plan field", "alignment = 64", "alignmnet = 64", 5, 30,
     r"unknown memory plan field alignmnet"),
    ("cycle through a fused group", "fused(%x, %w, %b)", "fused(%x, %w, %2)", 6, 32,
     r"unknown value %2: it is defined only later, at 13:3 \(rule: every value is defined "
     r"before its first use; a use above its definition is a cycle"),
    ("dangling operand of a fused group", "fused(%x, %w, %b)", "fused(%x, %w, %c)", 6, 32,
     r"unknown value %c: no value of that name is defined above this use in graph @g \(a "
     r"dangling value\)"),
    ("body breaks its kind", 'kind = "contraction"', 'kind = "pointwise"', 6, 3,
     r"a pointwise body may hold only pointwise ops; node 0 \(matmul\) is a contraction op "
     r"\(rule: the body of a 'pointwise' group"),
    ("unknown kind", 'kind = "contraction"', 'kind = "gemm"', 6, 3,
     r"unknown fused kind 'gemm'; the kinds are pointwise, reduction, contraction, opaque"),
]


@pytest.mark.parametrize("old,new,line,col,pattern", [b[1:] for b in BAD_PLANS],
                         ids=[b[0] for b in BAD_PLANS])
def test_bad_plan_edits(old, new, line, col, pattern):
    with pytest.raises(ParseError) as info:
        dlc.parse(edit(old, new, PLANNED), "edited.dlc")
    err = info.value
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"edited.dlc:{line}:{col}: ")
    assert re.search(pattern, str(err)), str(err)


def test_verifier_cites_line_col_of_a_parsed_graph():
    """A parsed graph keeps its source positions: a later edit in Python that breaks the
    plan is reported at the node's offset in the text."""
    graph = dlc.parse(PLANNED, "edited.dlc")
    graph.meta["memory_plan"].offsets[3] = 0
    with pytest.raises(dlc.VerifyError) as info:
        dlc.verify(graph)
    assert str(info.value).startswith("edited.dlc:14:33: @g memory plan: %3 (matmul")
    assert (info.value.line, info.value.col) == (14, 33)


def test_verifier_names_a_cycle_through_a_fused_group():
    """Built in Python: a fused node made to read the node that reads it."""
    graph = build_fused()
    mm, fused, outer = graph.nodes
    fused.inputs = (outer, fused.inputs[1])
    with pytest.raises(dlc.VerifyError, match=r"node 1 \(fused layer block at m\.py:4\): input "
                                              r"0 is used before it is defined: it is the value "
                                              r"of node 2 \(fused\), which depends on this "
                                              r"node: a cycle"):
        dlc.verify(graph)


def test_mutated_planned_text_parses_or_raises_parse_error(rng):
    """Random edits of a planned, fused dump: a graph that round-trips, or a ParseError."""
    for _ in range(800):
        text = mutate(PLANNED, rng)
        try:
            graph = dlc.parse(text)
        except ParseError:
            continue
        roundtrip(graph)
