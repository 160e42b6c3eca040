"""Text form (being written)."""
def print_graph(g):
    lines = [f"graph @{g.name}(" + ", ".join(f"%{v.name}: {v.type} {v.role}" for v in g.inputs) + ") {"]
    ids = {v: f"%{v.name}" for v in g.inputs}
    for i, n in enumerate(g.nodes):
        ids[n] = f"%{i}"
        lines.append(f"  %{i}: {n.type} = {n.op.name}({', '.join(ids[v] for v in n.inputs)}) {n.attrs} loc({n.loc!r})")
    lines.append("  return " + ", ".join(ids[v] for v in g.outputs))
    return "\n".join(lines + ["}"])
