"""dlc.verify: each IR invariant, broken on purpose in a small hand-built graph, is reported
with a message naming the graph, the node (op, layer and loc) and the rule."""
import re

import numpy as np
import pytest

import dlc
from dlc.errors import VerifyError
from dlc.ir.graph import Graph, Input, Node
from dlc.ir.types import TensorType
from dlc.ops import OPS


def T(*shape, dtype="float32") -> TensorType:
    return TensorType(shape, dtype)


def node(op: str, inputs, type: TensorType, attrs=None, loc="m.py:3", scope=None, body=None):
    return Node(OPS[op], tuple(inputs), dict(attrs or {}), type, loc, scope, body)


def check(graph: Graph, pattern: str) -> None:
    with pytest.raises(VerifyError) as info:
        dlc.verify(graph)
    assert re.search(pattern, str(info.value)), str(info.value)


def ok_graph() -> Graph:
    x, w = Input("x", T(2, 3)), Input("w", T(3), "param")
    n0 = node("add", (x, w), T(2, 3))
    n1 = node("sum", (n0,), T(2), {"axes": (1,), "keepdims": False}, loc="m.py:4")
    return Graph([x, w], [n0, n1], [n1, n0], "g")


def test_a_valid_graph_passes_and_is_returned():
    g = ok_graph()
    assert dlc.verify(g) is g


def test_use_before_def():
    x = Input("x", T(2, 3))
    later = node("relu", (x,), T(2, 3), loc="m.py:5")
    first = node("neg", (later,), T(2, 3), loc="m.py:4")
    check(Graph([x], [first, later], [first], "g"),
          r"@g node 0 \(neg at m\.py:4\): input 0 is used before it is defined")


def test_value_from_another_graph():
    x, stranger = Input("x", T(2, 3)), Input("y", T(2, 3))
    n = node("add", (x, stranger), T(2, 3))
    check(Graph([x], [n], [n], "g"), r"node 0 \(add at m\.py:3\): input 1 is used before it is "
                                     r"defined \(or not in this graph\)")


def test_wrong_recorded_type():
    x = Input("x", T(2, 3))
    n = node("relu", (x,), T(3, 2), scope="fc1 (Linear)")
    check(Graph([x], [n], [n], "g"),
          r"node 0 \(relu layer fc1 \(Linear\) at m\.py:3\): recorded type f32\[3,2\] but the "
          r"op's rule gives f32\[2,3\]")


def test_wrong_recorded_dtype():
    x = Input("x", T(2, 3))
    n = node("lt", (x, x), T(2, 3))
    check(Graph([x], [n], [n], "g"), r"node 0 \(lt .*recorded type f32\[2,3\] but the op's rule "
                                     r"gives i1\[2,3\]")


def test_op_rule_rejects_the_inputs():
    a, b = Input("a", T(2, 3)), Input("b", T(4, 5))
    n = node("matmul", (a, b), T(2, 5))
    check(Graph([a, b], [n], [n], "g"), r"node 0 \(matmul at m\.py:3\): .*inner dimensions")


@pytest.mark.parametrize("attrs,pattern", [
    ({"axes": (-1,), "keepdims": False},
     r"attributes \{'axes': \(-1,\), 'keepdims': False\} are not canonical \(expected "
     r"\{'axes': \(1,\), 'keepdims': False\}\)"),
    ({"axes": (1,)}, r"attributes \{'axes': \(1,\)\} are not canonical .*'keepdims': False\}\)"),
    ({"keepdims": False}, r"sum: missing required attribute axes"),
    ({"axes": (1,), "keepdims": False, "bogus": 1},
     r"sum: unknown attribute\(s\) \['bogus'\]; expected \['axes', 'keepdims'\]"),
    ({"axes": "one", "keepdims": False}, r"sum: attribute axes expects ints, got 'one'"),
    ({"axes": (5,), "keepdims": False}, r"axis 5 is out of range for rank 2"),
], ids=["negative axis", "default not filled", "missing", "unknown", "wrong kind", "range"])
def test_bad_attrs(attrs, pattern):
    x = Input("x", T(2, 3))
    n = node("sum", (x,), T(2), attrs)
    check(Graph([x], [n], [n], "g"), r"^@g node 0 \(sum at m\.py:3\): " + pattern + "$")


def test_wrong_arity():
    x = Input("x", T(2, 3))
    n = node("add", (x,), T(2, 3))
    check(Graph([x], [n], [n], "g"), r"node 0 \(add at m\.py:3\): add takes 2 inputs, got 1")


def test_duplicate_input_names():
    a, b = Input("x", T(2)), Input("x", T(3), "param")
    check(Graph([a, b], [], [a], "g"), r"@g: duplicate input names \['x'\]")


def test_undefined_output():
    x, y = Input("x", T(2)), Input("y", T(2))
    check(Graph([x], [], [x, y], "g"), r"@g: output 1 is not defined in the graph")


def test_alias_to_an_input_role():
    g = ok_graph()
    g.outputs = [g.nodes[0], g.inputs[0]]
    g.aliases = {0: "x"}
    check(g, r"@g: output 0 aliases x, a input; only param and state inputs can be updated")


def test_alias_to_a_const():
    x, c = Input("x", T(3)), Input("c", T(3), "const", np.zeros(3, np.float32))
    n = node("add", (x, c), T(3))
    check(Graph([x, c], [n], [n], "g", aliases={0: "c"}), r"output 0 aliases c, a const")


def test_alias_of_wrong_type():
    g = ok_graph()
    g.aliases = {1: "w"}  # output 1 is f32[2,3], w is f32[3]
    check(g, r"@g: output 1 \(f32\[2,3\]\) aliases w of type f32\[3\]")


def test_alias_to_a_missing_input_or_output():
    g = ok_graph()
    g.aliases = {0: "nope"}
    check(g, r"@g: output 0 aliases .*no input named 'nope'")
    g.aliases = {7: "w"}
    check(g, r"@g: alias of output 7, which does not exist")


def fused_graph(body_arg_type: TensorType, body_out_type: TensorType,
                node_type: TensorType) -> Graph:
    x, b = Input("x", T(2, 3)), Input("b", T(3), "param")
    a0, a1 = Input("a0", T(2, 3)), Input("a1", body_arg_type)
    inner = node("add", (a0, a1), body_out_type, loc="m.py:8")
    body = Graph([a0, a1], [inner], [inner], "bb")
    fused = node("fused", (x, b), node_type, {"name": "k", "kind": "pointwise"}, body=body)
    return Graph([x, b], [fused], [fused], "g")


def test_fused_body_is_verified():
    dlc.verify(fused_graph(T(3), T(2, 3), T(2, 3)))
    check(fused_graph(T(3), T(9), T(9)),
          r"@g node 0 \(fused at m\.py:3\): in its body: @bb node 0 \(add at m\.py:8\): "
          r"recorded type f32\[9\]")


def test_fused_body_arguments_match_operands():
    check(fused_graph(T(1, 3), T(2, 3), T(2, 3)),
          r"node 0 \(fused at m\.py:3\): body input types differ from the node's input types")


def test_fused_node_type_matches_its_body():
    check(fused_graph(T(3), T(2, 3), T(3, 2)),
          r"node 0 \(fused at m\.py:3\): its body's first output is f32\[2,3\], but the "
          r"node's type is f32\[3,2\]")


def test_parsed_text_of_an_invalid_graph_is_refused():
    """verify's rules hold for parsed graphs too: text can't smuggle in a wrong type."""
    g = ok_graph()
    g.nodes[1] = node("sum", (g.nodes[0],), T(3), {"axes": (1,), "keepdims": False})
    g.outputs = [g.nodes[1]]
    with pytest.raises(VerifyError):
        dlc.verify(g)
    with pytest.raises(dlc.ParseError, match="recorded as f32\\[3\\] but the sum rule gives"):
        dlc.parse(str(g))


# -- fused nodes with several outputs ----------------------------------------------------------
def multi_graph(yields=(0, 1), results=((1, None),), kind="pointwise") -> Graph:
    """x -> fused {exp, neg, sum over rows, matmul} yielding the body values `yields`, read by
    result nodes (index, type or None for the yielded value's type)."""
    x = Input("x", T(2, 2))
    a0 = Input("a0", T(2, 2))
    body_nodes = [node("exp", (a0,), T(2, 2)), node("neg", (a0,), T(2, 2)),
                  node("sum", (a0,), T(2), {"axes": (1,), "keepdims": False}),
                  node("matmul", (a0, a0), T(2, 2))]
    outputs = [body_nodes[i] for i in yields]
    # only the yielded nodes, a matmul first (a contraction body starts with it)
    used = [body_nodes[i] for i in sorted(set(yields), key=lambda i: (i != 3, i))]
    body = Graph([a0], used, outputs, "bb")
    fused = node("fused", (x,), outputs[0].type, {"name": "k", "kind": kind}, body=body)
    extra = [node("result", (fused,), t or T(2, 2), {"index": i}, loc=f"m.py:{5 + k}")
             for k, (i, t) in enumerate(results)]
    return Graph([x], [fused] + extra, [fused] + extra, "g")


def test_a_multi_output_group_verifies():
    dlc.verify(multi_graph())
    dlc.verify(multi_graph((0, 1, 0), ((2, None), (1, None))))  # any order, a value twice


@pytest.mark.parametrize("graph,pattern", [
    (lambda: multi_graph(results=((2, None),)),
     r"node 1 \(result at m\.py:5\): result: index 2 is out of range: the fused node 'k' "
     r"yields 2 value\(s\), so its extra outputs are 1..1"),
    (lambda: multi_graph(results=((0, None),)), r"result: index 0 is out of range"),
    (lambda: multi_graph(results=((1, T(2)),)),
     r"node 1 \(result at m\.py:5\): recorded type f32\[2\] but the op's rule gives "
     r"f32\[2,2\]"),
    (lambda: multi_graph(results=((1, None), (1, None))),
     r"node 2 \(result at m\.py:6\): a second result node for output 1 of node 0 \(the "
     r"first is node 1\)"),
    (lambda: multi_graph((0, 1, 0), ((2, None),)),
     r"node 0 \(fused at m\.py:3\): its body yields 3 values, but no result node reads "
     r"output 1"),
    (lambda: multi_graph((0, 2)),
     r"node 0 \(fused at m\.py:3\): the values a pointwise body yields share one shape, the "
     r"kernel's domain: output 1 is f32\[2\], output 0 is f32\[2,2\]"),
    (lambda: multi_graph((2, 1), ((1, None),), kind="reduction"),
     r"a reduction body yields one value, this one yields 2 \(only pointwise and opaque "
     r"groups have several outputs\)"),
    (lambda: multi_graph((3, 0), ((1, None),), kind="contraction"),
     r"a contraction body yields one value, this one yields 2"),
], ids=["index past the end", "index 0", "type", "two results for one output",
        "output without a result", "pointwise shapes differ", "reduction", "contraction"])
def test_multi_output_rules(graph, pattern):
    check(graph(), pattern)


def test_result_of_a_node_that_is_not_fused():
    x = Input("x", T(2, 3))
    relu = node("relu", (x,), T(2, 3))
    extra = node("result", (relu,), T(2, 3), {"index": 1}, loc="m.py:4")
    check(Graph([x], [relu, extra], [extra], "g"),
          r"node 1 \(result at m\.py:4\): result: its operand must be a fused node \(a kernel "
          r"with several outputs\), got a relu node")


MULTI = """graph @g(%x: f32[2,2] input) {
  %0: f32[2,2] = fused(%x) {name = "k", kind = "pointwise"} {
    ^bb(%a0: f32[2,2]):
      %0: f32[2,2] = exp(%a0)
      %1: f32[2,2] = neg(%a0)
      %2: f32[2] = full() {shape = [2], value = 1.0, dtype = f32}
      yield %0, %1, %0
  }
  %1: f32[2,2] = result(%0) {index = 1}
  %2: f32[2,2] = result(%0) {index = 2}
  return %0, %1, %2
}"""


@pytest.mark.parametrize("edits,line,col,pattern", [
    ([("result(%0) {index = 2}", "result(%0) {index = 1}")], 10, 3,
     r"a second result node for output 1 of node 0 \(the first is node 1\)"),
    ([("  %2: f32[2,2] = result(%0) {index = 2}\n", ""), ("%0, %1, %2\n}", "%0, %1\n}")], 2, 3,
     r"its body yields 3 values, but no result node reads output 2"),
    ([("yield %0, %1, %0", "yield %0, %1, %2"), ("%2: f32[2,2] = result", "%2: f32[2] = result"),
      ], 2, 3, r"output 2 is f32\[2\], output 0 is f32\[2,2\]"),
], ids=["two results for one output", "output without a result", "pointwise shapes differ"])
def test_multi_output_rules_cite_line_and_col(edits, line, col, pattern):
    """Rules checked on the whole graph are reported at the node that breaks them."""
    assert str(dlc.parse(MULTI)) == MULTI
    text = MULTI
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(dlc.ParseError) as info:
        dlc.parse(text, "edited.dlc")
    assert (info.value.line, info.value.col) == (line, col), str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_an_opaque_group_may_yield_values_of_any_shape():
    text = MULTI.replace('kind = "pointwise"', 'kind = "opaque"').replace(
        "yield %0, %1, %0", "yield %0, %1, %2").replace("%2: f32[2,2] = result",
                                                        "%2: f32[2] = result")
    assert str(dlc.parse(text)) == text
