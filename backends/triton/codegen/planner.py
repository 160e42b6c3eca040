"""From a group's body to its kernels: normally one, more when the body asks for it.

The planner asks for a kernel computing the group's output, reading only the body inputs.
The generator is chosen by what the output's cone holds (a scatter_add output, a
contraction of the output's shape, reductions, or none: pointwise). When generation meets a
value it cannot compute in that kernel (Conflict: a reduction over other axes, a second
matmul, a per-row value needed at another row), that value is materialized: it gets a
scratch buffer and a kernel of its own (named <group>_<k>), and generation starts over. A
fused group whose ops fit one kernel, which is what the fusion pass builds, gets exactly
one kernel named after the group.
"""
from __future__ import annotations

from typing import Callable

from dlc.ir.graph import Node, Value
from backends.triton.codegen.builder import Conflict, Param
from backends.triton.codegen.common import GeneratedKernel, KernelRequest, cone
from backends.triton.codegen.gemm import generate_gemm, is_contraction
from backends.triton.codegen.lowering import LOWERING
from backends.triton.codegen.pointwise import generate_pointwise
from backends.triton.codegen.rows import generate_rows, is_reduction
from backends.triton.codegen.scatter import generate_scatter
from backends.triton.groups import Group
from backends.triton.options import TritonOptions
from backends.triton.program import BufferRef, Kernel, Launch

GENERATORS = {"pointwise": generate_pointwise, "reduction": generate_rows,
              "contraction": generate_gemm, "scatter": generate_scatter}


def kind_of(out: Value, nodes: list[Node]) -> str:
    if isinstance(out, Node) and out.op.name == "scatter_add" and out.body is None:
        return "scatter"
    if any(is_contraction(n) and n.shape == out.shape for n in nodes):
        return "contraction"
    if any(is_reduction(n) for n in nodes):
        return "reduction"
    return "pointwise"


class GroupPlanner:
    def __init__(self, group: Group, options: TritonOptions, sites: list,
                 storage: Callable[[Value], str]):
        self.group, self.options, self.sites, self.storage = group, options, sites, storage
        body = group.body
        # body value -> (buffer, kernel parameter name)
        self.buffers: dict[Value, tuple[BufferRef, str]] = {
            v: (ref, name) for v, ref, name in
            zip(body.inputs, group.input_refs, group.input_names)}
        self.order = {id(n): k for k, n in enumerate(body.nodes)}
        self.scratch = 0

    def materialize(self, v: Value) -> None:
        ref = BufferRef("scratch", (self.group.position, self.scratch), self.storage(v),
                        v.shape)
        self.buffers[v] = (ref, f"tmp{self.scratch}")
        self.scratch += 1

    def request(self, out: Value, name: str, out_ref: BufferRef) -> KernelRequest:
        params = {v: Param(pname, ref.dtype, ref.shape)
                  for v, (ref, pname) in self.buffers.items()
                  if v is not out or v in self.group.body.inputs}
        return KernelRequest(name, self.group.name, out, params,
                             Param("out_ptr", out_ref.dtype, out_ref.shape), self.options,
                             LOWERING, self.sites)

    def generate(self, out: Value, name: str, out_ref: BufferRef) -> GeneratedKernel:
        """Generate, materializing each value that conflicts, until a kernel comes out."""
        for _ in range(len(self.group.body.nodes) + 1):
            req = self.request(out, name, out_ref)
            mark = len(self.sites)
            try:
                nodes = cone(out, set(req.params))
                return GENERATORS[kind_of(out, nodes)](req)
            except Conflict as c:
                del self.sites[mark:]
                if c.value is out or c.value in self.buffers:
                    raise AssertionError(f"triton: cannot generate {self.group.name}: "
                                         f"{c.value} conflicts with itself ({c})") from None
                self.materialize(c.value)
        raise AssertionError(f"triton: planning {self.group.name} did not converge")

    def plan(self) -> list[Kernel]:
        out = self.group.body.outputs[0]
        pending = [(out, self.group.name, self.group.out_ref)]
        made: dict[int, tuple[Value, Kernel]] = {}
        while pending:
            v, name, ref = pending.pop()
            if id(v) in made:
                continue
            generated = self.generate(v, name, ref)
            made[id(v)] = (v, self._kernel(v, name, ref, generated))
            for u, (uref, _) in list(self.buffers.items()):
                if uref.kind == "scratch" and id(u) not in made:
                    pending.append((u, f"{self.group.name}_{uref.key[1]}", uref))
        ordered = sorted(made.values(), key=lambda p: self.order.get(id(p[0]), len(self.order)))
        return [k for _, k in ordered]

    def _kernel(self, v: Value, name: str, ref: BufferRef, gen: GeneratedKernel) -> Kernel:
        by_name = {pname: bref for bref, pname in self.buffers.values()}
        by_name["out_ptr"] = ref
        by_name["err_ptr"] = BufferRef("error", 0, "int64", (1 + 2 * len(self.sites),))
        launches = [Launch(g.fn, [by_name[p] for p in g.params], g.grid, g.meta, g.num_warps,
                           g.configs) for g in gen.launches]
        nodes = cone(v, set(self.buffers) - {v})
        return Kernel(name, self.group.name, self.group.position,
                      [n.op.name for n in nodes], [n.loc for n in nodes if n.loc], gen.kind,
                      gen.source, launches, ref)


def plan_group(group: Group, options: TritonOptions, sites: list,
               storage: Callable[[Value], str]) -> list[Kernel]:
    """The kernels computing one group, in dependency order."""
    return GroupPlanner(group, options, sites, storage).plan()
