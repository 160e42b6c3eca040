"""Views of a Graph for pictures and graph algorithms: Graphviz DOT and a networkx DiGraph.

Both are derived from the graph on demand and name values as the text form prints them
(`%x`, `%3`), so a picture, a networkx query and a dump all speak of the same values.
"""
from __future__ import annotations

from dlc.ir.graph import Graph, Input, Node, Value
from dlc.ir.text import format_attr, value_names

# Fill colours of graph inputs, by role.
ROLE_COLORS = {"input": "lightblue", "param": "khaki", "state": "sandybrown",
               "const": "lightgrey"}


def _q(text: str) -> str:
    """A DOT string literal; label lines are joined with DOT's own \\n escape."""
    lines = text.split("\n")
    return '"' + "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in lines) + '"'


def _attr_text(node: Node) -> str:
    return ", ".join(f"{k}={format_attr(v)}" for k, v in node.attrs.items())


class _Dot:
    """Writes one graph (and, recursively, fused bodies as clusters) as DOT statements."""

    def __init__(self):
        self.lines: list[str] = []
        self.clusters = 0

    def add(self, indent: str, text: str) -> None:
        self.lines.append(indent + text)

    def graph(self, graph: Graph, prefix: str, indent: str) -> dict[Value, str]:
        names = value_names(graph)
        ids = {v: _q(prefix + name) for v, name in names.items()}
        for v in graph.inputs:
            label = f"{names[v]}\n{v.type}\n{v.role}"
            self.add(indent, f"{ids[v]} [shape=ellipse, style=filled, "
                             f"fillcolor={ROLE_COLORS[v.role]}, label={_q(label)}];")
        for node in graph.nodes:
            self.node(node, names[node], ids, prefix, indent)
        return ids

    def node(self, node: Node, name: str, ids: dict[Value, str], prefix: str,
             indent: str) -> None:
        label = f"{name} = {node.op.name}\n{node.type}"
        if node.attrs and node.body is None:
            label += "\n" + _attr_text(node)
        where = " ".join(p for p in (node.loc, node.scope) if p)
        tooltip = f", tooltip={_q(where)}" if where else ""
        if node.body is None:
            self.add(indent, f"{ids[node]} [shape=box, label={_q(label)}{tooltip}];")
            self.operand_edges(node, ids, ids[node], indent)
            return
        self.clusters += 1
        title = f"{node.attrs.get('name', node.op.name)} ({node.attrs.get('kind', '')})"
        self.add(indent, f"subgraph cluster_{self.clusters} {{")
        inner = indent + "  "
        self.add(inner, f"label={_q(title)}; style=rounded;")
        self.add(inner, f"{ids[node]} [shape=box, style=bold, label={_q(label)}{tooltip}];")
        body_ids = self.graph(node.body, f"{prefix}{name}/", inner)
        self.add(indent, "}")
        for k, (outer, arg) in enumerate(zip(node.inputs, node.body.inputs)):
            self.edge(ids.get(outer), body_ids[arg], indent, f"label={k}, style=dashed")
        for out in node.body.outputs:
            self.edge(body_ids.get(out), ids[node], indent, 'label="yield", style=dashed')

    def operand_edges(self, node: Node, ids: dict[Value, str], target: str,
                      indent: str) -> None:
        many = len(node.inputs) > 1
        for k, v in enumerate(node.inputs):
            self.edge(ids.get(v), target, indent, f"label={k}" if many else "")

    def edge(self, source: str | None, target: str, indent: str, attrs: str) -> None:
        if source is None:  # an operand from outside the graph: verify reports it
            return
        self.add(indent, f"{source} -> {target}" + (f" [{attrs}]" if attrs else "") + ";")

    def returns(self, graph: Graph, ids: dict[Value, str]) -> None:
        self.add("  ", '"return" [shape=doubleoctagon];')
        for i, v in enumerate(graph.outputs):
            label = f"{i}" + (f" aliases {graph.aliases[i]}" if i in graph.aliases else "")
            self.edge(ids.get(v), '"return"', "  ", f"label={_q(label)}")


def to_dot(graph: Graph) -> str:
    """Graphviz DOT: inputs as ellipses coloured by role, nodes as boxes labelled with the
    value name, op and type, fused nodes as clusters holding their body."""
    dot = _Dot()
    dot.add("", f"digraph {_q(graph.name)} {{")
    dot.add("  ", 'node [fontname="monospace"]; edge [fontname="monospace"];')
    ids = dot.graph(graph, "", "  ")
    dot.returns(graph, ids)
    dot.add("", "}")
    return "\n".join(dot.lines) + "\n"


def _input_attrs(v: Input) -> dict:
    return dict(op=None, type=str(v.type), role=v.role, loc=None, scope=None, attrs={},
                body=None)


def _node_attrs(n: Node) -> dict:
    return dict(op=n.op.name, type=str(n.type), role=None, loc=n.loc, scope=n.scope,
                attrs=dict(n.attrs), body=None if n.body is None else to_networkx(n.body))


def to_networkx(graph: Graph):
    """A networkx.DiGraph keyed by printed value names (`%x`, `%3`).

    Node attributes: op (None for inputs), type (text), role (None for nodes), loc, scope,
    attrs, body (a DiGraph of a fused body, else None), outputs (indices in the graph's
    outputs). Edge attributes: index (the first operand position), indices (all of them,
    when a node uses a value twice). Graph attributes: name, outputs, aliases."""
    import networkx as nx
    names = value_names(graph)
    g = nx.DiGraph(name=graph.name, outputs=[names.get(v) for v in graph.outputs],
                   aliases=dict(graph.aliases))
    for v in graph.inputs:
        g.add_node(names[v], **_input_attrs(v), outputs=[])
    for n in graph.nodes:
        g.add_node(names[n], **_node_attrs(n), outputs=[])
    for n in graph.nodes:
        for k, v in enumerate(n.inputs):
            if v not in names:
                continue
            if g.has_edge(names[v], names[n]):
                g.edges[names[v], names[n]]["indices"].append(k)
            else:
                g.add_edge(names[v], names[n], index=k, indices=[k])
    for i, v in enumerate(graph.outputs):
        if v in names:
            g.nodes[names[v]]["outputs"].append(i)
    return g
