"""`verify(graph)`: the IR invariants every pass must keep.

- every input of a node is defined earlier (a graph input or an earlier node): SSA order,
  which also rules out cycles;
- each op's arity and attributes match its record; the recorded type equals the op's rule;
- graph input names are unique; outputs are defined; aliases name param/state inputs with
  the output's type; fused bodies verify too and match their node's inputs and type.
"""
from __future__ import annotations

from dlc.errors import DlcError, VerifyError
from dlc.ir.graph import Graph, Node


def verify(graph: Graph) -> Graph:
    """Raise VerifyError naming the node (and its loc) that breaks a rule; return graph."""
    names = [v.name for v in graph.inputs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise VerifyError(f"@{graph.name}: duplicate input names {sorted(dupes)}")
    defined = set(graph.inputs)
    for index, node in enumerate(graph.nodes):
        _verify_node(graph, index, node, defined)
        defined.add(node)
    for i, out in enumerate(graph.outputs):
        if out not in defined:
            raise VerifyError(f"@{graph.name}: output {i} is not defined in the graph")
    for i, name in graph.aliases.items():
        if not 0 <= i < len(graph.outputs):
            raise VerifyError(f"@{graph.name}: alias of output {i}, which does not exist")
        try:
            target = graph.input(name)
        except KeyError as e:
            raise VerifyError(f"@{graph.name}: output {i} aliases {e}") from None
        if target.role not in ("param", "state"):
            raise VerifyError(f"@{graph.name}: output {i} aliases {name}, a {target.role}; "
                              f"only param and state inputs can be updated")
        if target.type != graph.outputs[i].type:
            raise VerifyError(f"@{graph.name}: output {i} ({graph.outputs[i].type}) aliases "
                              f"{name} of type {target.type}")
    return graph


def _verify_node(graph: Graph, index: int, node: Node, defined: set) -> None:
    def fail(msg: str):
        raise VerifyError(f"@{graph.name} node {index} ({node.op.name} {node.where()}): {msg}")

    for k, v in enumerate(node.inputs):
        if v not in defined:
            fail(f"input {k} is used before it is defined (or not in this graph)")
    types = [v.type for v in node.inputs]
    if node.body is not None:
        body = node.body
        try:
            verify(body)
        except VerifyError as e:
            fail(f"in its body: {e}")
        if [v.type for v in body.inputs] != types:
            fail("body input types differ from the node's input types")
        if len(body.outputs) != 1 or body.outputs[0].type != node.type:
            fail(f"body must have one output of type {node.type}")
        return
    try:
        node.op.check_arity(len(node.inputs))
        canon = node.op.canonical_attrs(types, node.attrs)
        if canon != node.attrs:
            fail(f"attributes {node.attrs} are not canonical (expected {canon})")
        expected = node.op.infer(types, canon)
    except VerifyError:
        raise
    except DlcError as e:
        fail(str(e))
    if expected != node.type:
        fail(f"recorded type {node.type} but the op's rule gives {expected}")
