"""Reports of a memory plan: `memory_table` (`dlc dump --memory`) and `plot_memory`
(`--memory-plot out.png`). Both read only the graph and its plan, so they work on a graph
parsed from an edited dump as well as on the planner's own output."""
from __future__ import annotations

from dlc.errors import DlcError
from dlc.ir.graph import Graph, Node
from dlc.ir.groups import kernel_of
from dlc.ir.plan import (MemoryPlan, execution_order, inplace_reuse, live_ranges,
                         planned_positions, view_roots)
from passes.memory.inplace import plan_reuse, plan_updates


def _plan(graph: Graph) -> MemoryPlan:
    plan = graph.meta.get("memory_plan")
    if not isinstance(plan, MemoryPlan):
        raise DlcError(f"@{graph.name} has no memory plan: run passes.memory.plan_memory "
                       f"(the O2 pipeline does)")
    return plan


def kernel_name(node: Node) -> str:
    """The kernel that writes the value: `fused3_add` (its output k: `fused3_add#k`)."""
    kernel = kernel_of(node)
    name = kernel.attrs.get("name", kernel.op.name) if kernel.body is not None else \
        kernel.op.name
    return f"{name}#{node.attrs['index']}" if kernel is not node else name


def kernel_kind(node: Node) -> str:
    kernel = kernel_of(node)
    return kernel.attrs.get("kind", "opaque") if kernel.body is not None else \
        kernel.op.kind.value


class _Analysis:
    """Steps, lifetimes and sharing of every planned value of a graph and its plan."""

    def __init__(self, graph: Graph):
        self.graph, self.plan = graph, _plan(graph)
        order = execution_order(graph, self.plan)
        self.step = {pos: s for s, pos in enumerate(order)}
        # live ranges in steps, whatever the schedule: positions -> (first, last) step
        views = self.plan.views
        self.ranges = {p: r for p, r in live_ranges(graph, order, views).items()}
        self.planned = sorted(planned_positions(graph, views), key=self.step.get)
        self.roots = view_roots(graph, views)
        self.pairs = inplace_reuse(graph, self.plan)
        arena_ranges = {p: self.ranges[p] for p in self.planned}
        _, self.refused = plan_reuse(graph, self.planned, arena_ranges, views)

    def span(self, pos: int) -> tuple[int, int]:
        off = self.plan.offsets.get(pos, 0)
        return off, off + self.graph.nodes[pos].type.nbytes

    def recycled(self, pos: int) -> list[int]:
        """Values dead before `pos` is born whose bytes `pos` takes."""
        lo, hi = self.span(pos)
        born = self.ranges[pos][0]
        return [q for q in self.planned if self.ranges[q][1] < born
                and self.span(q)[0] < hi and lo < self.span(q)[1]]

    def reuse(self, pos: int) -> str:
        if self.graph.nodes[pos].type.nbytes == 0:
            return "empty: takes no bytes"
        if pos in self.pairs:
            return f"in place of %{self.pairs[pos]}"
        old = self.recycled(pos)
        if old:
            names = ", ".join(f"%{q}" for q in old[:3]) + (" ..." if len(old) > 3 else "")
            return f"reuses bytes of {names}"
        born = self.ranges[pos][0]
        dead = [q for q in self.planned if self.ranges[q][1] < born]
        fresh = ("nothing had died yet" if not dead else
                 "the bytes freed so far are held by values live with it")
        return f"new bytes ({fresh}); not in place: {self.refused.get(pos, 'see the plan')}"


def _summary(graph: Graph, plan: MemoryPlan) -> list[str]:
    lb, naive, arena = plan.lower_bound_bytes, plan.naive_bytes, plan.arena_bytes
    ratios = []
    if lb:
        ratios.append(f"{arena / lb:.2f} x lower bound")
    if naive:
        ratios.append(f"{arena / naive:.2f} x naive")
    return [f"memory plan of @{graph.name}: arena {arena} bytes"
            + (f" ({', '.join(ratios)})" if ratios else ""),
            f"  naive {naive} bytes (every value its own buffer), lower bound {lb} bytes "
            f"(peak of simultaneously live bytes), alignment {plan.alignment}"]


def _output_lines(graph: Graph, plan: MemoryPlan) -> list[str]:
    refused = plan_updates(graph).refused
    index = {node: pos for pos, node in enumerate(graph.nodes)}
    lines = []
    for i, v in enumerate(graph.outputs):
        what = f"%{index[v]}" if v in index else f"input %{getattr(v, 'name', '?')}"
        if i in plan.inplace:
            where = f"in place into %{plan.inplace[i]}"
        elif i in graph.aliases:
            where = (f"own array, copied into %{graph.aliases[i]}: "
                     f"{refused.get(i, 'not in the plan')}")
        else:
            where = "own array"
        lines.append(f"  output {i} ({what}, {v.type}, {v.type.nbytes} bytes): {where}")
    return lines


def memory_table(graph: Graph) -> str:
    """One line per planned value (step, kernel, type, bytes, offset, lifetime, reuse or
    why not) and per view (the value whose bytes it reads), then the outputs, after a
    summary of arena, naive and lower-bound bytes."""
    a = _Analysis(graph)
    rows = [("step", "value", "kernel", "type", "bytes", "offset", "live", "reuse")]
    for pos in sorted(a.planned + list(a.roots), key=a.step.get):
        node = graph.nodes[pos]
        first, last = a.ranges[pos]
        if pos in a.roots:
            root = a.roots[pos]
            source = f"%{root}" if isinstance(root, int) else f"input %{root.name}"
            rows.append((str(first), f"%{pos}", kernel_name(node), str(node.type), "0",
                         "view", f"{first}..{last}", f"reads {source}'s bytes (no copy)"))
            continue
        rows.append((str(first), f"%{pos}", kernel_name(node), str(node.type),
                     str(node.type.nbytes), str(a.plan.offsets.get(pos, "-")),
                     f"{first}..{last}", a.reuse(pos)))
    widths = [max(len(r[k]) for r in rows) for k in range(7)]
    right = {0, 4, 5}
    table = []
    for r in rows:
        cells = [r[k].rjust(widths[k]) if k in right else r[k].ljust(widths[k])
                 for k in range(7)]
        table.append("  " + "  ".join(cells) + "  " + r[7])
    outputs = _output_lines(graph, a.plan)
    return "\n".join(_summary(graph, a.plan) + [""] + table + ["", "outputs:"] + outputs)


_KIND_COLORS = {"contraction": "tab:red", "reduction": "tab:blue", "pointwise": "tab:green",
                "elementwise": "tab:green", "movement": "tab:orange", "opaque": "tab:gray"}


def plot_memory(graph: Graph, path: str) -> None:
    """Draw the plan's lifetime chart to `path` (PNG, SVG, PDF by its suffix): step on x,
    arena offset on y, one box per planned value, coloured by its kernel's kind."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch, Rectangle
    except ImportError:
        raise DlcError("plot_memory needs matplotlib: pip install dlc[plot]") from None
    a = _Analysis(graph)
    fig = Figure(figsize=(10, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = max(len(graph.nodes), 1)
    for pos in a.planned:
        node = graph.nodes[pos]
        lo, hi = a.span(pos)
        first, last = a.ranges[pos]
        color = _KIND_COLORS.get(kernel_kind(node), "tab:gray")
        ax.add_patch(Rectangle((first, lo), last - first + 1, max(hi - lo, 1),
                               facecolor=color, edgecolor="black", linewidth=0.5, alpha=0.8))
        if hi - lo > a.plan.arena_bytes / 25 and last - first + 1 > steps / 40:
            ax.text(first + 0.1, lo + (hi - lo) / 2, f"%{pos}", fontsize=7, va="center")
    ax.set_xlim(0, steps)
    ax.set_ylim(0, max(a.plan.arena_bytes, 1))
    ax.set_xlabel("step (node of the schedule)")
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(f"@{graph.name}: arena {a.plan.arena_bytes} B, lower bound "
                 f"{a.plan.lower_bound_bytes} B, naive {a.plan.naive_bytes} B")
    kinds = sorted({kernel_kind(graph.nodes[p]) for p in a.planned})
    ax.legend(handles=[Patch(color=_KIND_COLORS.get(k, "tab:gray"), label=k) for k in kinds],
              loc="best", fontsize=8)
    fig.savefig(path)
