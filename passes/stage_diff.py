"""What one pass changed: a unified diff of the text before and after it, with counts.

The text form numbers node values in order (%0, %1, ...), so removing one early node would
renumber every later line and drown the change. The diff therefore matches nodes across the
two graphs by structure (op, attributes, type, body and matched inputs): in the text after
the pass, a node that is unchanged keeps its number from before, and a new node is named
%new0, %new1, ... The text before the pass is shown exactly as dumped.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from dlc.ir.graph import Graph, Value
from passes.simplify.common import attr_key

_NUMBERED = re.compile(r"%([0-9]+)(?![0-9A-Za-z_.])")
_TOP_LEVEL = "  "  # statements of the top-level graph are indented by two spaces, no more


@dataclass
class StageDiff:
    removed: int   # top-level nodes of the graph before that have no match after
    added: int     # top-level nodes after that have no match before
    before_nodes: int
    after_nodes: int
    text: str      # the unified diff

    def summary(self, name: str) -> str:
        return (f"pass {name}: {self.removed} nodes removed, {self.added} added "
                f"({self.before_nodes} -> {self.after_nodes} top-level nodes)")


def _structural_keys(graph: Graph) -> list[object]:
    """One key per top-level node: equal keys compute the same thing from the same inputs."""
    keys: dict[Value, object] = {v: ("input", v.name) for v in graph.inputs}
    out = []
    for node in graph.nodes:
        body = str(node.body) if node.body is not None else None
        key = hash((node.op.name, attr_key(node.attrs), str(node.type), body,
                    tuple(keys[v] for v in node.inputs)))
        keys[node] = key
        out.append(key)
    return out


def _match(before: Graph, after: Graph) -> dict[int, str]:
    """After-node position -> its name in the aligned text (`%N` of before, or %newK)."""
    free: dict[object, list[int]] = {}
    for i, key in enumerate(_structural_keys(before)):
        free.setdefault(key, []).append(i)
    names, new = {}, 0
    for j, key in enumerate(_structural_keys(after)):
        if free.get(key):
            names[j] = str(free[key].pop(0))
        else:
            names[j], new = f"new{new}", new + 1
    return names


def _renumber(text: str, names: dict[int, str]) -> str:
    """Rename the top-level node values of `text` (bodies number their own values)."""
    def rename(m: re.Match) -> str:
        return "%" + names.get(int(m.group(1)), m.group(1))

    lines = []
    for line in text.splitlines():
        top = line.startswith(_TOP_LEVEL) and not line.startswith(_TOP_LEVEL + " ")
        lines.append(_NUMBERED.sub(rename, line) if top else line)
    return "\n".join(lines)


def diff_stages(before: Graph, after: Graph, before_name: str = "before",
                after_name: str = "after", context: int = 3) -> StageDiff:
    """The aligned unified diff of `before` and `after` (see the module docstring)."""
    names = _match(before, after)
    old_text = str(before)
    new_text = _renumber(str(after), names)
    added = sum(1 for n in names.values() if n.startswith("new"))
    matched = len(after.nodes) - added
    lines = difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), before_name,
                                 after_name, n=context, lineterm="")
    return StageDiff(len(before.nodes) - matched, added, len(before.nodes), len(after.nodes),
                     "\n".join(lines))
