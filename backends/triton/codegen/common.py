"""Pieces every kernel generator shares: the request it gets, the function text it returns.

A KernelRequest names the value to compute (for a multi-output pointwise kernel: the
values, all of one shape), the body values it may read from buffers (its parameters) and
the group it belongs to. Generators return GeneratedKernel: the function source(s) and
launches with parameter names still symbolic; the planner binds them to BufferRefs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from math import prod

from dlc.ir.graph import Node, Value
from backends.triton.codegen.builder import INT32_LIMIT, KernelBuilder, Param
from backends.triton.options import TritonOptions


@dataclass
class KernelRequest:
    name: str                       # the generated function's name
    group: str                      # the fused group (or node) this kernel belongs to
    out: Value                      # body value to compute and store
    params: dict[Value, Param]      # body values read from buffers -> pointer parameter
    out_param: Param
    options: TritonOptions
    lowering: dict
    sites: list                     # the program's checked index sites
    # further values of out's shape the kernel stores (a multi-output pointwise group)
    extra_outs: list[tuple[Value, Param]] = field(default_factory=list)

    @property
    def outs(self) -> list[tuple[Value, Param]]:
        """Every (value, pointer parameter) the kernel stores, out first."""
        return [(self.out, self.out_param)] + self.extra_outs

    def builder(self, context) -> KernelBuilder:
        return KernelBuilder(self.lowering, self.params, context, self.sites,
                             self.options.check_indices)

    @property
    def index64(self) -> bool:
        """Offsets need int64 when a tensor has 2**31 elements or more."""
        sizes = [prod(p.shape) for p in self.params.values()]
        sizes += [prod(p.shape) for _, p in self.outs]
        return max(sizes) > INT32_LIMIT


@dataclass
class GeneratedLaunch:
    fn: str
    params: list[str]            # parameter names in call order (pointer parameters)
    grid: tuple
    meta: dict[str, int] = field(default_factory=dict)
    num_warps: int = 4
    configs: list[dict] | None = None


@dataclass
class GeneratedKernel:
    kind: str
    source: str
    launches: list[GeneratedLaunch]


def cone(out: Value, stop: set) -> list[Node]:
    """Nodes that computing `out` evaluates, not crossing values in `stop`; topological."""
    return joint_cone([out], stop)


def joint_cone(outs: list[Value], stop: set) -> list[Node]:
    """Nodes that computing every value of `outs` evaluates (each once); topological."""
    seen: dict[int, Node] = {}
    order: list[Node] = []

    def visit(v: Value) -> None:
        if v in stop or not isinstance(v, Node) or id(v) in seen:
            return
        seen[id(v)] = v
        for i in v.inputs:
            visit(i)
        order.append(v)

    for out in outs:
        visit(out)
    return order


def identifier(text: str) -> str:
    """A Python identifier made from text (kernel and parameter names)."""
    name = re.sub(r"\W+", "_", text).strip("_") or "k"
    return name if not name[0].isdigit() else "k" + name


def header(req: KernelRequest, kind: str, nodes: list[Node]) -> str:
    """The comment above a kernel: its group, ops and where in the user's code they are."""
    ops = ", ".join(n.op.name for n in nodes) or "copy"
    locs = []
    for n in nodes:
        where = n.loc or ""
        if n.scope:
            where = f"{where} ({n.scope})" if where else f"({n.scope})"
        if where and where not in locs:
            locs.append(where)
    types = ", ".join(str(v.type) for v, _ in req.outs)
    lines = [f"# kernel {req.name} ({kind}) of group {req.group}: {types}",
             f"# ops: {ops}"]
    lines += [f"# from: {loc}" for loc in locs[:8]]
    if len(locs) > 8:
        lines.append(f"# from: ... and {len(locs) - 8} more places")
    return "\n".join(lines)


def function(name: str, kb: KernelBuilder, req: KernelRequest, meta: list[str],
             head: str, extra_params: tuple[str, ...] = (), decorator: str = "",
             pointers: list[str] | None = None) -> str:
    """Source of one @triton.jit function; pointer parameters first, then constexprs."""
    if pointers is not None:
        return _function(name, kb, pointers + [f"{m}: tl.constexpr" for m in meta], head,
                         decorator)
    params = pointer_names(req, kb, extra_params) + [f"{m}: tl.constexpr" for m in meta]
    return _function(name, kb, params, head, decorator)


def _function(name: str, kb: KernelBuilder, params: list[str], head: str,
              decorator: str) -> str:
    lines = [head, decorator + "@triton.jit", f"def {name}({', '.join(params)}):"]
    return "\n".join(lines + kb.body()) + "\n"


def pointer_names(req: KernelRequest, kb: KernelBuilder | list, extra: tuple[str, ...] = ()):
    """Pointer parameters in order: the inputs the kernel(s) read, the outputs, then the
    error flags.

    kb may be a list of builders when one source holds several functions sharing them."""
    kbs = kb if isinstance(kb, list) else [kb]
    used = set().union(*(k.used for k in kbs))
    names = [p.name for p in req.params.values() if p.name in used]
    names += [p.name for _, p in req.outs] + list(extra)
    return names + (["err_ptr"] if any(k.error_used for k in kbs) else [])


def warps_for(tile: int) -> int:
    return 4 if tile <= 2048 else 8 if tile <= 8192 else 16
