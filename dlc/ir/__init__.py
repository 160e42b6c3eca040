"""The IR: tensor types, values, nodes, graphs, the text form and the verifier."""
from dlc.ir.types import DTYPES, TensorType  # noqa: F401
from dlc.ir.graph import ROLES, Graph, Input, Node, Value  # noqa: F401
from dlc.ir.builder import Builder, emit  # noqa: F401
from dlc.ir.verify import verify  # noqa: F401


def parse(text: str, source: str | None = None) -> Graph:
    """Read the text form back into a Graph (see docs/ir-grammar.md)."""
    from dlc.ir.text import parse_graph
    return parse_graph(text, source)
