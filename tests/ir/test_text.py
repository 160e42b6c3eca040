"""The IR text form: round trips (every op case, multi-node graphs, fused regions, traced
loops), parse errors with their line:col, and the DOT / networkx views.

A round trip must print identically (`str(parse(str(g))) == str(g)`), verify, and compute
bit-for-bit what the original graph computes on fresh random inputs."""
import importlib
import math
import os
import pkgutil
import re

import networkx as nx
import numpy as np
import pytest
import torch

import dlc
from backends.eager import run_graph
from dlc.errors import ParseError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph, Input, Node
from dlc.ir.text import value_names
from dlc.ir.types import TensorType
from dlc.ops import OPS
from tests.ops import harness
from tests.ops.harness import CASES, TOL, assert_allclose

for _m in pkgutil.iter_modules([os.path.dirname(harness.__file__)]):
    if _m.name.startswith("cases_"):
        importlib.import_module(f"tests.ops.{_m.name}")

F32 = "float32"


def T(*shape, dtype=F32) -> TensorType:
    return TensorType(shape, dtype)


def roundtrip(graph: Graph) -> Graph:
    """Print, parse, print again: identical text, and the parsed graph verifies."""
    text = str(graph)
    parsed = dlc.parse(text)
    assert str(parsed) == text
    dlc.verify(parsed)
    return parsed


def assert_same_results(a: Graph, b: Graph, args: list[np.ndarray]) -> None:
    """Both graphs give bit-identical outputs (NaN only where the other has NaN too)."""
    outs_a, outs_b = run_graph(a, args), run_graph(b, args)
    assert len(outs_a) == len(outs_b)
    for x, y in zip(outs_a, outs_b):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def graph_args(graph: Graph, rng) -> list[np.ndarray]:
    """Random arrays for every input of `graph` (user inputs and params alike)."""
    out = []
    for v in graph.inputs:
        if v.type.dtype == "bool":
            out.append(rng.random(v.type.shape) < 0.5)
        elif v.type.dtype in ("int32", "int64"):
            out.append(rng.integers(0, 3, v.type.shape).astype(v.type.dtype))
        else:
            out.append(rng.standard_normal(v.type.shape).astype(v.type.dtype))
    return out


# -- (a) every op case of the op table --------------------------------------------------------
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op_case_round_trip(c, rng):
    arrays = c.make_inputs(rng, F32)
    graph = c.build(arrays)
    parsed = roundtrip(graph)
    assert [v.type for v in parsed.inputs] == [v.type for v in graph.inputs]
    assert parsed.nodes[0].attrs == graph.nodes[0].attrs
    assert_same_results(graph, parsed, arrays)


def test_every_op_with_a_case_is_covered():
    covered = {c.op for c in CASES}
    assert covered, "no op cases were collected"
    assert covered <= set(OPS)


# -- (b) graphs with several nodes, roles, aliases, locs and scopes ---------------------------
def build_step() -> Graph:
    """A small 'training step'-like graph: every role, an alias, locs and scopes."""
    with Builder("step") as b:
        x = b.add_input("x", T(4, 3))
        w = b.add_input("fc1.weight", T(5, 3), "param")
        bias = b.add_input("fc1.bias", T(5), "param")
        mom = b.add_input("fc1.weight.momentum", T(5, 3), "state")
        scale = b.const(np.full((5,), 0.5, np.float32))
        labels = b.add_input("labels", T(4, dtype="int64"))
        wt = b.emit("permute", (w,), {"perm": (1, 0)}, loc="model.py:12", scope="fc1 (Linear)")
        y = b.emit("matmul", (x, wt), {}, loc="model.py:12", scope="fc1 (Linear)")
        y = b.emit("add", (y, bias), {}, loc="model.py:12", scope="fc1 (Linear)")
        y = b.emit("mul", (y, scale), {}, loc="model.py:13")
        hot = b.emit("one_hot", (labels,), {"num_classes": 5}, loc="model.py:14")
        err = b.emit("sub", (y, hot), {}, loc="model.py:14")
        sq = b.emit("mul", (err, err), {}, loc="model.py:14")
        loss = b.emit("mean", (sq,), {"axes": (-2, -1)}, loc="model.py:14")
        g = b.emit("matmul", (b.emit("permute", (err,), {"perm": (1, 0)}), x), {},
                   loc="<generated>")
        new_mom = b.emit("add", (b.emit("mul", (mom, b.emit("full", (), {
            "shape": (), "value": 0.9})), {}), g), {})
        lr = b.emit("full", (), {"shape": (), "value": 0.1})
        new_w = b.emit("sub", (w, b.emit("mul", (new_mom, lr), {})), {})
    return b.finish([loss, new_w, new_mom], aliases={1: "fc1.weight", 2: "fc1.weight.momentum"})


def test_multi_node_graph_round_trip(rng):
    graph = build_step()
    text = str(graph)
    assert "{aliases = {1 = %fc1.weight, 2 = %fc1.weight.momentum}}" in text
    assert '%const0: f32[5] const' in text
    assert 'loc("model.py":12) scope("fc1 (Linear)")' in text
    assert 'loc("<generated>")' in text  # no ':line' suffix: printed as one string
    parsed = roundtrip(graph)
    assert parsed.aliases == graph.aliases
    assert [(v.name, v.role) for v in parsed.inputs] == [(v.name, v.role) for v in graph.inputs]
    assert all(v.data is None for v in parsed.inputs)
    assert [n.loc for n in parsed.nodes] == [n.loc for n in graph.nodes]
    assert [n.scope for n in parsed.nodes] == [n.scope for n in graph.nodes]
    assert_same_results(graph, parsed, graph_args(graph, rng))


def test_parsed_graph_compiles_with_params(rng):
    """A parsed graph carries no weights; dlc.compile(..., params=) supplies them."""
    graph = build_step()
    parsed = dlc.parse(str(graph))
    params = {v.name: rng.standard_normal(v.type.shape).astype(v.type.dtype)
              for v in graph.inputs if v.role in ("param", "state")}
    params["const0"] = graph.input("const0").data
    x = rng.standard_normal((4, 3)).astype(np.float32)
    labels = rng.integers(0, 5, (4,)).astype(np.int64)
    loss = dlc.compile(parsed, params=dict(params))(x, labels)
    # oracle: the same step in torch
    w = torch.from_numpy(params["fc1.weight"])
    y = (torch.from_numpy(x) @ w.T + torch.from_numpy(params["fc1.bias"])) * 0.5
    err = y - torch.nn.functional.one_hot(torch.from_numpy(labels), 5).float()
    expected = (err * err).mean().numpy()
    assert_allclose(np.asarray(loss), expected, *TOL[F32])


def test_traced_module_round_trip(rng):
    model = dlc.nn.Sequential(dlc.nn.Linear(4, 3), dlc.nn.ReLU(), dlc.nn.Linear(3, 2))
    graph = dlc.trace(model, dlc.TensorSpec((2, 4)))
    text = str(graph)
    assert "%0.weight: f32[3,4] param" in text  # digits then a dot: still a bare name
    assert 'scope("0 (Linear)")' in text
    parsed = roundtrip(graph)
    assert_same_results(graph, parsed, graph_args(graph, rng))


def test_odd_names_are_quoted_and_unambiguous(rng):
    with Builder("my graph") as b:
        zero = b.add_input("0", T(3))           # a pure number: must not read as node %0
        spaced = b.add_input("my input", T(3), "param")
        quoted = b.add_input('we"ird\\name\n', T(3), "state")
        uni = b.add_input("größe", T(3))
        n0 = b.emit("add", (zero, spaced), {}, loc='dir with "quotes"/f.py:7')
        n1 = b.emit("mul", (n0, quoted), {}, loc="no line here", scope="a\tb\u2028c")
        n2 = b.emit("sub", (n1, uni), {}, loc="weird:012")  # a leading zero is not a line
    graph = b.finish([n2, n0, zero])
    text = str(graph)
    assert '%"0": f32[3] input' in text and "add(%\"0\", %\"my input\")" in text
    assert "@\"my graph\"" in text
    parsed = roundtrip(graph)
    assert [v.name for v in parsed.inputs] == ["0", "my input", 'we"ird\\name\n', "größe"]
    assert parsed.nodes[1].scope == "a\tb\u2028c"
    assert [n.loc for n in parsed.nodes] == [n.loc for n in graph.nodes]
    assert parsed.outputs[2] is parsed.inputs[0]
    assert_same_results(graph, parsed, graph_args(graph, rng))


@pytest.mark.parametrize("value", [0.1, 1e-5, -0.0, 1e-300, 5e-324, 1.7976931348623157e308,
                                   0.1 + 0.2, 1 / 3, math.inf, -math.inf, 123456789.0])
def test_float_attrs_read_back_identically(value):
    with Builder("f") as b:
        node = b.emit("full", (), {"shape": (2,), "value": value, "dtype": "float64"})
    graph = b.finish([node])
    parsed = roundtrip(graph)
    got = parsed.nodes[0].attrs["value"]
    assert got == value and math.copysign(1, got) == math.copysign(1, value)


def test_nan_attr_round_trip():
    with Builder("f") as b:
        node = b.emit("full", (), {"shape": (2,), "value": math.nan})
    parsed = roundtrip(b.finish([node]))
    assert math.isnan(parsed.nodes[0].attrs["value"])


def test_graph_attributes_round_trip():
    graph = build_step()
    graph.meta["attributes"] = {"arena_bytes": 4096, "offsets": {0: 0, 3: 256},
                                "note": "planned \"greedy\"", "ratio": 0.25,
                                "flags": [True, False, None], "nested": {"a b": [1, [2]]}}
    graph.meta["not printed"] = object()
    parsed = roundtrip(graph)
    assert parsed.meta["attributes"] == graph.meta["attributes"]
    assert "not printed" not in parsed.meta


def test_loose_hand_written_text_prints_canonical():
    text = """
    // comments, named results, gaps in numbering, omitted defaults, negative axes
    graph @hand(%x: f32[2,3] input) {
      %h: f32[2,3] = relu(%x)
      %7: f32[2] = sum(%h) {axes = [-1]}        // keepdims defaults to false
      %07b: f32[2,3] = leaky_relu(%h) {negative_slope = 1}   // an int for a float
      return %7, %07b
    }"""
    parsed = dlc.parse(text)
    assert str(parsed) == "\n".join([
        "graph @hand(%x: f32[2,3] input) {",
        "  %0: f32[2,3] = relu(%x)",
        "  %1: f32[2] = sum(%0) {axes = [1], keepdims = false}",
        "  %2: f32[2,3] = leaky_relu(%0) {negative_slope = 1.0}",
        "  return %1, %2",
        "}"])


# -- (c) fused nodes with a body --------------------------------------------------------------
def fused_add_relu(a_type: TensorType, b_type: TensorType) -> Graph:
    a0, a1 = Input("a0", a_type), Input("a1", b_type)
    out = T(*np.broadcast_shapes(a_type.shape, b_type.shape))
    n0 = Node(OPS["add"], (a0, a1), {}, out)
    n1 = Node(OPS["relu"], (n0,), {}, out)
    return Graph([a0, a1], [n0, n1], [n1], "bb")


def build_fused() -> Graph:
    x, w = Input("x", T(4, 3)), Input("w", T(3, 5), "param")
    bias = Input("bias", T(5), "param")
    mm = Node(OPS["matmul"], (x, w), {}, T(4, 5), loc="m.py:3")
    body = fused_add_relu(mm.type, bias.type)
    fused = Node(OPS["fused"], (mm, bias), {"name": "fused_add_relu", "kind": "pointwise"},
                 T(4, 5), loc="m.py:4", scope="block", body=body)
    # a fused node whose body holds another fused node (regions nest)
    inner = fused_add_relu(T(4, 5), T(4, 5))
    o0, o1 = Input("o0", T(4, 5)), Input("o1", T(4, 5))
    n_inner = Node(OPS["fused"], (o0, o1), {"name": "inner", "kind": "pointwise"}, T(4, 5),
                   body=inner)
    n_neg = Node(OPS["neg"], (n_inner,), {}, T(4, 5))
    outer_body = Graph([o0, o1], [n_inner, n_neg], [n_neg], "outer")
    outer = Node(OPS["fused"], (fused, mm), {"name": "outer", "kind": "opaque"}, T(4, 5),
                 body=outer_body)
    return Graph([x, w, bias], [mm, fused, outer], [outer, fused], "fusedg")


def test_fused_node_round_trip(rng):
    graph = build_fused()
    dlc.verify(graph)
    text = str(graph)
    assert ('%1: f32[4,5] = fused(%0, %bias) {name = "fused_add_relu", kind = "pointwise"} '
            'loc("m.py":4) scope("block") {') in text
    assert "    ^bb(%a0: f32[4,5], %a1: f32[5]):\n      %0: f32[4,5] = add(%a0, %a1)" in text
    assert "      yield %1\n  }" in text
    assert text.count("^bb(") == 2 and "^outer(" in text
    parsed = roundtrip(graph)
    assert parsed.nodes[1].body is not None and parsed.nodes[2].body.nodes[0].body is not None
    args = graph_args(graph, rng)
    assert_same_results(graph, parsed, args)
    # oracle: the same computation in torch
    x, w, bias = (torch.from_numpy(a) for a in args)
    mm = x @ w
    fused = torch.relu(mm + bias)
    expected = [-torch.relu(fused + mm), fused]
    for got, want in zip(run_graph(parsed, args), expected):
        assert_allclose(got, want.numpy(), *TOL[F32])


def test_fused_node_may_carry_extra_attrs(rng):
    """verify does not check a bodied node's attrs against the op's schema, so the text form
    keeps whatever a pass put there (here: the fused ops and an arena offset)."""
    graph = build_fused()
    fused = graph.nodes[1]
    fused.attrs.update(ops=("add", "relu"), offset=256, tiles={"m": 4})
    dlc.verify(graph)
    assert ('{name = "fused_add_relu", kind = "pointwise", ops = ["add", "relu"], '
            'offset = 256, tiles = {m = 4}}') in str(graph)
    parsed = roundtrip(graph)
    assert parsed.nodes[1].attrs == fused.attrs
    assert_same_results(graph, parsed, graph_args(graph, rng))


# -- (c') fused nodes with several outputs -----------------------------------------------------
MULTI_TEXT = """graph @adam(%p: f32[4,3] param, %g: f32[4,3] input, %m: f32[4,3] state) {
  %0: f32[4,3] = fused(%p, %g, %m) {name = "update", kind = "pointwise"} {
    ^bb(%a0: f32[4,3], %a1: f32[4,3], %a2: f32[4,3]):
      %0: f32[] = full() {shape = [], value = 0.9, dtype = f32}
      %1: f32[4,3] = mul(%a2, %0)
      %2: f32[4,3] = add(%1, %a1)
      %3: f32[4,3] = sub(%a0, %2)
      %4: i1[4,3] = gt(%2, %a0)
      yield %3, %2, %4
  }
  %1: f32[4,3] = result(%0) {index = 1}
  %2: i1[4,3] = result(%0) {index = 2}
  %3: f32[4,3] = fused(%1) {name = "inner", kind = "opaque"} {
    ^bb(%a0: f32[4,3]):
      %0: f32[4,3] = fused(%a0) {name = "k", kind = "pointwise"} {
        ^bb(%a0: f32[4,3]):
          %0: f32[4,3] = exp(%a0)
          %1: f32[4,3] = neg(%a0)
          yield %0, %1
      }
      %1: f32[4,3] = result(%0) {index = 1}
      %2: f32[4,3] = add(%0, %1)
      yield %2, %1
  }
  %4: f32[4,3] = result(%3) {index = 1}
  return %0, %1, %2, %4 {aliases = {0 = %p, 1 = %m}}
}"""


def test_multi_output_round_trip(rng):
    """`yield` of several values, and `result` nodes that name the extra ones, nested in an
    opaque group too; the eager interpreter runs each body once."""
    graph = dlc.parse(MULTI_TEXT)
    assert str(graph) == MULTI_TEXT
    roundtrip(graph)
    p, g, m = (rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3))
    new_p, new_m, bigger, neg = run_graph(graph, [p, g, m])
    tp, tg, tm = (torch.from_numpy(a) for a in (p, g, m))
    want_m = tm * 0.9 + tg
    assert_allclose(new_m, want_m.numpy(), *TOL[F32])
    assert_allclose(new_p, (tp - want_m).numpy(), *TOL[F32])
    np.testing.assert_array_equal(bigger, (want_m > tp).numpy())
    assert_allclose(neg, (-want_m).numpy(), *TOL[F32])


def test_multi_output_built_by_hand_prints_like_the_text(rng):
    x = Input("x", T(2, 3))
    a0 = Input("a0", T(2, 3))
    n0 = Node(OPS["exp"], (a0,), {}, T(2, 3))
    n1 = Node(OPS["cast"], (n0,), {"dtype": "float64"}, T(2, 3, dtype="float64"))
    body = Graph([a0], [n0, n1], [n0, n1], "bb")
    fused = Node(OPS["fused"], (x,), {"name": "k", "kind": "pointwise"}, T(2, 3), body=body)
    extra = Node(OPS["result"], (fused,), {"index": 1}, n1.type, loc="m.py:7")
    graph = Graph([x], [fused, extra], [extra, fused], "g")
    text = str(graph)
    assert "      yield %0, %1\n  }\n  %1: f64[2,3] = result(%0) {index = 1} " \
           'loc("m.py":7)\n  return %1, %0' in text
    parsed = roundtrip(graph)
    assert_same_results(graph, parsed, graph_args(graph, rng))


# -- (d) a traced function with Python loops --------------------------------------------------
def rnn_like(x, h):
    for step in range(3):                      # unrolled at trace time
        h = (x[step] @ h).tanh() + h * 0.5
    return h.sum(), h


def test_traced_loop_round_trip(rng):
    graph = dlc.trace(rnn_like, dlc.TensorSpec((3, 4, 4)), dlc.TensorSpec((4, 4)))
    parsed = roundtrip(graph)
    assert len(parsed.nodes) == len(graph.nodes) > 9
    x = rng.standard_normal((3, 4, 4)).astype(np.float32)
    h = rng.standard_normal((4, 4)).astype(np.float32)
    assert_same_results(graph, parsed, [x, h])
    th = torch.from_numpy(h)
    for step in range(3):
        th = torch.tanh(torch.from_numpy(x[step]) @ th) + th * 0.5
    total, last = run_graph(parsed, [x, h])
    assert_allclose(last, th.numpy(), *TOL[F32])
    # the sum of 16 values: accumulation order may differ from torch's by a few ulps
    assert_allclose(total, th.sum().numpy(), rtol=1e-5, atol=1e-5)


# -- malformed text ---------------------------------------------------------------------------
BASE = """graph @g(%x: f32[2,3] input, %w: f32[3,4] param) {
  %0: f32[2,4] = matmul(%x, %w) loc("m.py":3)
  %1: f32[2,4] = relu(%0)
  return %1
}"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text
    return text.replace(old, new, 1)


BAD = [
    # (id, text, line, col, a regex the message must match)
    ("dangling value", edit("relu(%0)", "relu(%9)"), 3, 23,
     r"unknown value %9: no value of that name is defined above this use in graph @g "
     r"\(a dangling value\)"),
    ("unknown op", edit("relu", "rellu"), 3, 18, r"unknown op 'rellu'.*did you mean relu"),
    ("bad dimension", edit("%1: f32[2,4]", "%1: f32[2,x]"), 3, 13,
     r"expected a dimension .*got 'x'"),
    ("bad dtype", edit("%1: f32[2,4]", "%1: f31[2,4]"), 3, 7, r"expected a type like f32"),
    ("missing brackets", edit("%1: f32[2,4]", "%1: f32 = "), 3, 11,
     r"expected '\[' after the dtype f32"),
    ("unterminated string", edit('"m.py"', '"m.py'), 2, 37, r"unterminated string"),
    ("bad escape", edit('"m.py"', '"m\\q.py"'), 2, 39, r"unknown escape '\\q'"),
    ("missing brace", BASE[:-1], 5, 1, r"expected '}' to close graph @g \(opened at 1:50\), "
                                       r"got end of input"),
    ("wrong attr kind", edit("relu(%0)", "sum(%0) {axes = 1.5}"), 3, 34,
     r"attribute axes of sum expects a list of ints.*got float 1.5"),
    ("wrong attr kind in list", edit("relu(%0)", 'sum(%0) {axes = [0, "1"]}'), 3, 38,
     r"expects a list of ints.*got string \"1\""),
    ("bool attr given an int", edit("relu(%0)", "sum(%0) {axes = [1], keepdims = 1}"), 3, 50,
     r"keepdims of sum expects true or false, got int 1"),
    ("unknown dtype attr", edit("relu(%0)", "cast(%0) {dtype = f33}"), 3, 36,
     r"expects a dtype \(f16, .*got identifier f33"),
    ("unknown attr", edit("relu(%0)", "relu(%0) {foo = 1}"), 3, 28,
     r"relu has no attribute foo; it takes no attributes"),
    ("missing required attr", edit("relu(%0)", "sum(%0)"), 3, 18,
     r"missing required attribute axes"),
    ("type disagrees with rule", edit("%0: f32[2,4]", "%0: f32[2,5]"), 2, 7,
     r"%0 is recorded as f32\[2,5\] but the matmul rule gives f32\[2,4\]"),
    ("op rule rejects inputs", edit("matmul(%x, %w)", "matmul(%w, %x)"), 2, 18,
     r"matmul: .*inputs: f32\[3,4\], f32\[2,3\]"),
    ("wrong arity", edit("relu(%0)", "relu(%0, %0)"), 3, 18, r"relu takes 1 inputs, got 2"),
    ("redefinition", edit("%1: f32[2,4] = relu", "%0: f32[2,4] = relu"), 3, 3,
     r"%0 is already defined at 2:3"),
    ("use before definition", edit("matmul(%x, %w)", "matmul(%x, %1)"), 2, 29,
     r"unknown value %1: it is defined only later, at 3:3 \(rule: every value is "
     r"defined before its first use; a use above its definition is a cycle"),
    ("bad role", edit("param", "parm"), 1, 43, r"expected a role \(input, param"),
    ("number as input name", edit("%x:", "%5:"), 1, 10, r'quote it as %"5"'),
    ("trailing text", BASE + "\nextra", 6, 1, r"expected end of input"),
    ("missing return", edit("  return %1\n", ""), 4, 1, r"expected a node .* or 'return'"),
    ("alias to an input", edit("return %1", "return %1 {aliases = {0 = %x}}"), 4, 29,
     r"an input of role input; only param and state"),
    ("alias of another type", edit("return %1", "return %1 {aliases = {0 = %w}}"), 4, 29,
     r"output 0 has type f32\[2,4\] but aliases %w of type f32\[3,4\]"),
    ("alias index out of range", edit("return %1", "return %1 {aliases = {3 = %w}}"), 4, 25,
     r"index of a returned value"),
    ("unexpected character", edit("relu", "re$lu"), 3, 20, r"unexpected character '\$'"),
    ("missing comma", edit("matmul(%x, %w)", "matmul(%x %w)"), 2, 28, r"expected ','"),
]

FUSED_TEXT = """graph @g(%x: f32[2,3] input, %b: f32[3] param) {
  %0: f32[2,3] = fused(%x, %b) {name = "k", kind = "pointwise"} {
    ^bb(%a0: f32[2,3], %a1: f32[3]):
      %0: f32[2,3] = add(%a0, %a1)
      yield %0
  }
  return %0
}"""

BAD += [
    ("body missing brace", edit("      yield %0\n  }\n", "      yield %0\n", FUSED_TEXT), 6, 3,
     r"expected '}' to close the body of %0 \(fused\) \(opened at 2:65\), got 'return'"),
    ("body sees only its arguments", edit("add(%a0, %a1)", "add(%x, %a1)", FUSED_TEXT), 4, 26,
     r"unknown value %x.*a body sees only its block arguments"),
    ("body argument type", edit("%a1: f32[3]", "%a1: f32[2,3]", FUSED_TEXT), 2, 28,
     r"operand %b has type f32\[3\] but its block argument %a1 has type f32\[2,3\]"),
    ("body yield type", edit("%0: f32[2,3] = fused", "%0: f32[3,3] = fused", FUSED_TEXT),
     2, 7, r"recorded as f32\[3,3\] but its body yields f32\[2,3\]"),
    ("body yields nothing", edit("yield %0", "yield", FUSED_TEXT), 5, 7,
     r"a body yields at least one value"),
    ("fused without body", edit(
        """ {\n    ^bb(%a0: f32[2,3], %a1: f32[3]):\n      %0: f32[2,3] = add(%a0, %a1)\n"""
        """      yield %0\n  }""", "", FUSED_TEXT), 2, 18, r"fused nodes take their type"),
]


BAD += [
    ("result of a plain node", edit("result(%0) {index = 1}", "result(%p) {index = 1}",
                                    MULTI_TEXT), 11, 18,
     r"result: its operand must be a fused node .*got a graph input"),
    ("result index out of range", edit("result(%0) {index = 2}", "result(%0) {index = 3}",
                                       MULTI_TEXT), 12, 17,
     r"result: index 3 is out of range: the fused node 'update' yields 3 value\(s\), so its "
     r"extra outputs are 1..2"),
    ("result type", edit("%1: f32[4,3] = result", "%1: f32[3] = result", MULTI_TEXT), 11, 7,
     r"%1 is recorded as f32\[3\] but the result rule gives f32\[4,3\]"),
]


@pytest.mark.parametrize("text,line,col,pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_errors(text, line, col, pattern):
    with pytest.raises(ParseError) as info:
        dlc.parse(text, "edited.dlc")
    err = info.value
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"edited.dlc:{line}:{col}: ")
    assert re.search(pattern, str(err)), str(err)


def test_base_texts_parse():
    """The malformed cases are one edit away from texts that parse."""
    assert str(dlc.parse(BASE)) == BASE
    assert str(dlc.parse(FUSED_TEXT)) == FUSED_TEXT
    assert str(dlc.parse(MULTI_TEXT)) == MULTI_TEXT


def test_parser_never_evaluates_text():
    """Python expressions are not values: the parser reads only its own grammar."""
    with pytest.raises(ParseError, match="expected an attribute value"):
        dlc.parse(edit("relu(%0)", "leaky_relu(%0) {negative_slope = (1)}"))
    with pytest.raises(ParseError, match="expects a float, got identifier __import__"):
        dlc.parse(edit("relu(%0)", "leaky_relu(%0) {negative_slope = __import__}"))


def test_empty_graph_and_long_headers():
    empty = Graph([], [], [], "empty")
    assert str(roundtrip(empty)) == "graph @empty() {\n  return\n}"
    text = str(build_step())  # a header past 100 columns: one input per line
    assert text.startswith("graph @step(\n    %x: f32[4,3] input,\n    %fc1.weight: f32[5,3] "
                           "param,\n")
    assert "\n    %labels: i64[4] input\n) {\n" in text


MUTATIONS = list('%@^"{}[]()=,:-.\\/ \n0123456789abxyz') + [
    "f32", "i64", "inf", "nan", "true", "none", "fused", "yield", "return", "add", "//"]


def mutate(text: str, rng) -> str:
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(text) + 1))
        choice = rng.integers(3)
        if choice == 0:
            text = text[:i] + text[i + int(rng.integers(1, 5)):]
        elif choice == 1:
            text = text[:i] + MUTATIONS[int(rng.integers(len(MUTATIONS)))] + text[i:]
        else:
            j = int(rng.integers(len(text) + 1))
            text = text[:i] + text[j:j + 5] + text[i:]
    return text


def test_mutated_text_parses_or_raises_parse_error(rng):
    """Random edits of valid text: the parser either reads a graph that round-trips or
    raises ParseError; never another exception."""
    texts = [str(build_step()), str(build_fused()), BASE, FUSED_TEXT, MULTI_TEXT]
    for _ in range(1500):
        text = mutate(texts[int(rng.integers(len(texts)))], rng)
        try:
            graph = dlc.parse(text)
        except ParseError:
            continue
        roundtrip(graph)


# -- views --------------------------------------------------------------------------------------
def test_to_dot_contains_every_value():
    graph = build_fused()
    dot = graph.to_dot()
    assert dot.startswith('digraph "fusedg" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    for v, name in value_names(graph).items():
        assert f'"{name}" [' in dot
    for name in value_names(graph.nodes[1].body).values():  # the body, inside a cluster
        assert f'"%1/{name}" [' in dot
    assert dot.count("subgraph cluster_") == 3
    assert "shape=ellipse" in dot and "fillcolor=khaki" in dot and "shape=box" in dot
    assert '"%x" -> "%0" [label=0];' in dot


def test_to_dot_of_step_marks_aliases():
    dot = build_step().to_dot()
    assert 'label="1 aliases fc1.weight"' in dot
    for name in value_names(build_step()).values():
        assert f'"{name}" [' in dot


def test_to_networkx_counts_and_dag():
    graph = build_step()
    g = graph.to_networkx()
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == len(graph.inputs) + len(graph.nodes)
    pairs = {(id(v), id(n)) for n in graph.nodes for v in n.inputs}
    assert g.number_of_edges() == len(pairs)
    names = value_names(graph)
    for n in graph.nodes:
        data = g.nodes[names[n]]
        assert data["op"] == n.op.name and data["type"] == str(n.type)
        assert data["attrs"] == n.attrs and data["loc"] == n.loc and data["role"] is None
        for k, v in enumerate(n.inputs):
            assert k in g.edges[names[v], names[n]]["indices"]
    assert g.nodes["%fc1.weight"]["role"] == "param" and g.nodes["%x"]["op"] is None
    sq = next(n for n in graph.nodes if n.op.name == "mul" and n.inputs[0] is n.inputs[1])
    assert g.edges[names[sq.inputs[0]], names[sq]]["indices"] == [0, 1]
    assert g.graph["aliases"] == graph.aliases
    assert g.nodes[names[graph.outputs[1]]]["outputs"] == [1]
    # topological order of the DiGraph agrees with the graph's own order
    order = {name: i for i, name in enumerate(nx.topological_sort(g))}
    for n in graph.nodes:
        assert all(order[names[v]] < order[names[n]] for v in n.inputs)


def test_to_networkx_fused_body():
    g = build_fused().to_networkx()
    body = g.nodes["%1"]["body"]
    assert isinstance(body, nx.DiGraph) and sorted(body.nodes) == ["%0", "%1", "%a0", "%a1"]
    assert g.number_of_edges() == 6 and nx.is_directed_acyclic_graph(g)
