"""`verify(graph)`: the IR invariants every pass must keep.

- every input of a node is defined earlier (a graph input or an earlier node): SSA order,
  which also rules out cycles, through fused groups too;
- each op's arity and attributes match its record; the recorded type equals the op's rule;
- graph input names are unique; outputs are defined; aliases name param/state inputs with
  the output's type; fused bodies verify too, match their node's inputs and type, and follow
  the rules of their kind (dlc/ir/groups.py);
- a fused node that yields k > 1 values has exactly one `result` node per extra output
  1..k-1, each of the type its body yields there; a result reads a fused node;
- a memory plan in `graph.meta["memory_plan"]` is sound (dlc/ir/plan_check.py): every
  planned value has an aligned offset, fits in the arena, and overlaps no value live at the
  same step; in-place updates come after every reader of the old value.

A graph read from text carries a SourceMap in `graph.meta["source_map"]`: errors then cite
the line:col of the offending node (and VerifyError gets `.line` / `.col`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dlc.errors import DlcError, VerifyError
from dlc.ir.graph import Graph, Node, Value

SOURCE_KEY = "source_map"


@dataclass
class SourceMap:
    """Where the parser read each part of a graph: (line, col) pairs, 1-based."""
    source: str | None = None
    nodes: dict[Node, tuple[int, int]] = field(default_factory=dict)    # the node's result
    names: dict[Node, str] = field(default_factory=dict)                # as written: %h
    offsets: dict[Node, tuple[int, int]] = field(default_factory=dict)  # its offset(...)
    plan: tuple[int, int] | None = None                                 # the memory clause
    inplace: dict[int, tuple[int, int]] = field(default_factory=dict)   # an inplace entry

    def where(self, pos: tuple[int, int] | None) -> str:
        if pos is None:
            return ""
        return f"{self.source + ':' if self.source else ''}{pos[0]}:{pos[1]}: "


def positioned_error(graph: Graph, pos_of, message: str) -> VerifyError:
    """A VerifyError citing line:col when `graph` was parsed from text.

    `pos_of(source_map)` picks the position; the error keeps it as `.line` and `.col`."""
    smap = graph.meta.get(SOURCE_KEY)
    pos = pos_of(smap) if isinstance(smap, SourceMap) else None
    err = VerifyError((smap.where(pos) if pos else "") + message)
    err.line, err.col = pos if pos else (None, None)
    err.detail = message  # without the position, for a ParseError that prints its own
    return err


def verify(graph: Graph) -> Graph:
    """Raise VerifyError naming the node (and its loc) that breaks a rule; return graph."""
    names = [v.name for v in graph.inputs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise VerifyError(f"@{graph.name}: duplicate input names {sorted(dupes)}")
    positions = {node: i for i, node in enumerate(graph.nodes)}
    defined = set(graph.inputs)
    for index, node in enumerate(graph.nodes):
        _verify_node(graph, index, node, defined, positions)
        defined.add(node)
    for i, out in enumerate(graph.outputs):
        if out not in defined:
            raise VerifyError(f"@{graph.name}: output {i} is not defined in the graph")
    _verify_results(graph)
    _verify_aliases(graph)
    if graph.meta.get("memory_plan") is not None:
        from dlc.ir.plan_check import verify_plan
        verify_plan(graph)
    return graph


def _verify_results(graph: Graph) -> None:
    """Every extra output of a fused node is named by exactly one result node."""
    from dlc.ir.groups import results_of
    positions = {node: i for i, node in enumerate(graph.nodes)}
    results = results_of(graph.nodes)
    for index, node in enumerate(graph.nodes):
        if node.body is None:
            continue
        seen: dict[int, Node] = {}
        for r in results.get(node, ()):
            k = r.attrs["index"]
            if k in seen:
                raise _node_error(graph, positions[r], r,
                                  f"a second result node for output {k} of node {index} "
                                  f"(the first is node {positions[seen[k]]}) (rule: each "
                                  f"extra output of a fused node has exactly one result node)")
            seen[k] = r
        missing = [k for k in range(1, len(node.body.outputs)) if k not in seen]
        if missing:
            raise _node_error(graph, index, node,
                              f"its body yields {len(node.body.outputs)} values, but no "
                              f"result node reads output {missing[0]} (rule: each extra "
                              f"output of a fused node has exactly one result node)")


def _node_error(graph: Graph, index: int, node: Node, msg: str) -> VerifyError:
    return positioned_error(graph, lambda s: s.nodes.get(node),
                            f"@{graph.name} node {index} ({node.op.name} {node.where()}): {msg}")


def _verify_aliases(graph: Graph) -> None:
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


def _undefined_input(graph: Graph, k: int, v: Value, index: int,
                     positions: dict[Node, int]) -> str:
    later = positions.get(v) if isinstance(v, Node) else None
    if later is None:
        return (f"input {k} is used before it is defined (or not in this graph): a dangling "
                f"value; every operand must be a graph input or an earlier node")
    cycle = _depends_on(graph, v, graph.nodes[index])
    why = "which depends on this node: a cycle" if cycle else \
        "which comes later: reorder the nodes"
    return (f"input {k} is used before it is defined: it is the value of node {later} "
            f"({v.op.name}), {why} (rule: every value is defined before its first use)")


def _depends_on(graph: Graph, value: Node, node: Node) -> bool:
    """Does `value` depend on `node` (through any chain of top-level nodes)?"""
    users: dict[Value, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            users.setdefault(v, []).append(n)
    seen, stack = set(), [node]
    while stack:
        for u in users.get(stack.pop(), []):
            if u is value:
                return True
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return False


def _verify_node(graph: Graph, index: int, node: Node, defined: set,
                 positions: dict[Node, int]) -> None:
    def fail(msg: str):
        raise _node_error(graph, index, node, msg)

    for k, v in enumerate(node.inputs):
        if v not in defined:
            fail(_undefined_input(graph, k, v, index, positions))
    types = [v.type for v in node.inputs]
    if node.body is not None:
        _verify_group(node, types, fail)
        return
    try:
        node.op.check_arity(len(node.inputs))
        canon = node.op.canonical_attrs(types, node.attrs)
        if canon != node.attrs:
            fail(f"attributes {node.attrs} are not canonical (expected {canon})")
        expected = node.op.infer_for(node.inputs, canon)
    except VerifyError:
        raise
    except DlcError as e:
        fail(str(e))
    if expected != node.type:
        fail(f"recorded type {node.type} but the op's rule gives {expected}")


def _verify_group(node: Node, types: list, fail) -> None:
    """A node with a body: a fused op whose body verifies, matches it and follows its kind."""
    from dlc.ir.groups import KINDS, check_body
    body = node.body
    if node.op.name != "fused":
        fail("only fused nodes carry a body")
    try:
        verify(body)
    except VerifyError as e:
        if getattr(e, "line", None) is None:
            fail(f"in its body: {e}")
        inner = VerifyError(str(e))  # cite the body's own node, not the fused node
        inner.line, inner.col, inner.detail = e.line, e.col, e.detail
        raise inner from None
    if [v.type for v in body.inputs] != types:
        fail("body input types differ from the node's input types")
    if not body.outputs:
        fail("its body yields no value (rule: a body yields at least one)")
    if body.outputs[0].type != node.type:
        fail(f"its body's first output is {body.outputs[0].type}, but the node's type is "
             f"{node.type} (rule: a fused node's value is its body's output 0)")
    kind = node.attrs.get("kind", "opaque")
    if not isinstance(node.attrs.get("name", ""), str) or not isinstance(kind, str):
        fail("the name and kind attributes of a fused node are strings")
    if kind not in KINDS:
        fail(f"unknown fused kind {kind!r}; the kinds are {', '.join(KINDS)}")
    problem = check_body(kind, body)
    if problem is not None:
        fail(f"{problem} (rule: the body of a {kind!r} group, see dlc/ir/groups.py)")
