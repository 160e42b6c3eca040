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
          r"node 0 \(fused at m\.py:3\): body must have one output of type f32\[3,2\]")


def test_parsed_text_of_an_invalid_graph_is_refused():
    """verify's rules hold for parsed graphs too: text can't smuggle in a wrong type."""
    g = ok_graph()
    g.nodes[1] = node("sum", (g.nodes[0],), T(3), {"axes": (1,), "keepdims": False})
    g.outputs = [g.nodes[1]]
    with pytest.raises(VerifyError):
        dlc.verify(g)
    with pytest.raises(dlc.ParseError, match="recorded as f32\\[3\\] but the sum rule gives"):
        dlc.parse(str(g))
