"""Reading a memory plan from the text form: the header's `memory {...}` clause, the
`offset(N)` of each planned node and the `view` mark of each index map read through its
source (printing is in printer.py).

    graph @mlp(...) memory {arena_bytes = 262144, alignment = 64, naive_bytes = 524288,
                            lower_bound_bytes = 262144, inplace = {1 = %fc1.weight}} {
      %0: f32[64,512] = fused(%x, %0, %fc1.bias) {...} offset(0)
      %1: f32[512,784] = permute(%fc1.weight) {perm = [1, 0]} view

The parser only reads the numbers; `dlc.verify` (dlc/ir/plan_check.py) then checks the plan
and cites the line:col of the offending offset or entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlc.ir.graph import Input, Node
from dlc.ir.plan import ALIGNMENT, MemoryPlan
from dlc.ir.text.lexer import Token
from dlc.ir.text.literals import Lit
from dlc.ir.verify import SourceMap

if TYPE_CHECKING:
    from dlc.ir.text.parser import _Parser, _Scope

_NUMBERS = ("arena_bytes", "alignment", "naive_bytes", "lower_bound_bytes")
_FIELDS = _NUMBERS + ("inplace", "schedule")


@dataclass
class MemoryClause:
    """The clause as read: its fields, and where it and each inplace entry stand."""
    tok: Token
    numbers: dict[str, int] = field(default_factory=dict)
    inplace: dict[int, str] = field(default_factory=dict)
    inplace_at: dict[int, tuple[int, int]] = field(default_factory=dict)
    schedule: list[int] = field(default_factory=list)


def read_memory_clause(p: "_Parser", scope: "_Scope") -> MemoryClause:
    """`memory {arena_bytes = N, ...}` after the graph's inputs (and attributes)."""
    clause = MemoryClause(p.advance())
    if not p.at("{"):
        raise p.fail(p.peek(), f"expected {{arena_bytes = N, ...}} after 'memory', got "
                               f"{p.peek().describe()}")
    for key, key_tok, lit in p.entries():
        if key not in _FIELDS:
            raise p.fail(key_tok, f"unknown memory plan field {key_tok.text}; the fields are "
                                  f"{', '.join(_FIELDS)}")
        if key in clause.numbers or (key == "inplace" and clause.inplace) or \
                (key == "schedule" and clause.schedule):
            raise p.fail(key_tok, f"memory plan field {key} is given twice")
        if key in _NUMBERS:
            clause.numbers[key] = _count(p, lit, key)
        elif key == "schedule":
            if lit.kind != "list":
                raise p.fail(lit.tok, f"schedule is a list of node numbers, got "
                                      f"{lit.describe()}")
            clause.schedule = [_count(p, x, "a schedule entry") for x in lit.value]
        else:
            _read_inplace(p, scope, lit, clause)
    if "arena_bytes" not in clause.numbers:
        raise p.fail(clause.tok, "the memory plan needs arena_bytes = N (the arena's size)")
    return clause


def _count(p: "_Parser", lit: Lit, what: str) -> int:
    if lit.kind != "int" or lit.value < 0:
        raise p.fail(lit.tok, f"{what} is an integer >= 0, got {lit.describe()}")
    return lit.value


def _read_inplace(p: "_Parser", scope: "_Scope", lit: Lit, clause: MemoryClause) -> None:
    if lit.kind != "dict":
        raise p.fail(lit.tok, f"inplace is {{OUTPUT = %input, ...}}, got {lit.describe()}")
    for index, index_tok, target in lit.value:
        if index_tok.kind != "int":
            raise p.fail(index_tok, f"an inplace key is the index of a returned value, got "
                                    f"{index_tok.describe()}")
        if index in clause.inplace:
            raise p.fail(index_tok, f"output {index} is updated in place twice")
        if target.kind != "value":
            raise p.fail(target.tok, f"expected the %name of the input output {index} "
                                     f"overwrites, got {target.describe()}")
        value = p.lookup(scope, target.tok)
        if not isinstance(value, Input):
            raise p.fail(target.tok, f"inplace names graph inputs; {target.tok.text} is not one")
        clause.inplace[index] = value.name
        clause.inplace_at[index] = (index_tok.line, index_tok.col)


def build_plan(p: "_Parser", clause: MemoryClause | None, nodes: list[Node],
               smap: SourceMap) -> MemoryPlan | None:
    """The MemoryPlan of the clause and the nodes' offsets (positions in `nodes`)."""
    if clause is None:
        if p.offsets:
            first = min(p.offsets.values(), key=lambda o: (o[1].line, o[1].col))[1]
            what = "view" if first.text == "view" else "offset(...)"
            raise p.fail(first, f"{what} without a plan: the graph header needs "
                                "memory {arena_bytes = N, ...} (or drop the offsets and "
                                "run passes.memory.plan_memory)")
        return None
    smap.plan = (clause.tok.line, clause.tok.col)
    smap.inplace = dict(clause.inplace_at)
    placed = {pos: p.offsets[node][0] for pos, node in enumerate(nodes) if node in p.offsets}
    offsets = {pos: off for pos, off in placed.items() if off is not None}
    views = [pos for pos, off in placed.items() if off is None]
    n = clause.numbers
    schedule = list(clause.schedule) or list(range(len(nodes)))  # printed only if not this
    return MemoryPlan(arena_bytes=n["arena_bytes"], offsets=offsets,
                      inplace=dict(clause.inplace), schedule=schedule,
                      alignment=n.get("alignment", ALIGNMENT),
                      naive_bytes=n.get("naive_bytes", 0),
                      lower_bound_bytes=n.get("lower_bound_bytes", 0), views=views)
