"""The text form of the IR: `print_graph` and `parse_graph` (grammar in docs/ir-grammar.md).

printer.py prints a graph canonically (fused bodies as regions, a memory plan as the
header's `memory {...}` and per-node `offset(N)`); lexer.py, literals.py and parser.py read
it back, so that `str(parse(str(g))) == str(g)`.
"""
from dlc.ir.text.printer import (  # noqa: F401
    IDENT, META_KEY, NAME, PLAN_KEY, format_attr, format_float, print_graph, quote, symbol,
    value_names)
from dlc.ir.text.parser import parse_graph  # noqa: F401
