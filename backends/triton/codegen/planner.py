"""From a group's body to its kernels: normally one, more when the body asks for it.

The planner asks for a kernel computing the group's output, reading only the body inputs.
The generator is chosen by what the output's cone holds (a scatter_add output, a
contraction of the output's shape, reductions, or none: pointwise). When generation meets a
value it cannot compute in that kernel (Conflict: a reduction over other axes, a second
matmul, a per-row value needed at another row), that value is materialized: it gets a
scratch buffer and a kernel of its own (named <group>_<k>), and generation starts over. A
fused group whose ops fit one kernel, which is what the fusion pass builds, gets exactly
one kernel named after the group.

A group yielding several values stores them all from one pointwise kernel when they share
a shape and each is pointwise: a multi-output pointwise group is one kernel. Otherwise (an
opaque group) each yield is a job of its own, a kernel named <group>_out<i>; a yield that
conflicts inside the joint kernel leaves it the same way, and the kernels that need its
value read it from its buffer. Kernels run in body order of the last value they store, so
one that reads a buffer runs after the kernel writing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dlc.ir.graph import Node, Value
from backends.triton.codegen.builder import Conflict, Param
from backends.triton.codegen.common import (GeneratedKernel, KernelRequest, cone,
                                            joint_cone)
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


@dataclass
class Job:
    """One kernel to generate: the body values it stores, each as (value, buffer, yield
    index); the index is None for a scratch value."""
    name: str
    outs: list[tuple[Value, BufferRef, int | None]]

    def out_name(self, k: int) -> str:
        """Pointer parameter of the k-th stored value: out_ptr, then out<i>_ptr."""
        return "out_ptr" if k == 0 else f"out{self.outs[k][2]}_ptr"


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
        self.pending: list[Job] = []

    def materialize(self, v: Value) -> None:
        ref = BufferRef("scratch", (self.group.position, self.scratch), self.storage(v),
                        v.shape)
        self.buffers[v] = (ref, f"tmp{self.scratch}")
        self.pending.append(Job(f"{self.group.name}_{self.scratch}", [(v, ref, None)]))
        self.scratch += 1

    def split_off(self, job: Job, v: Value) -> None:
        """Yield v leaves the joint kernel: a kernel of its own writes its buffer, which the
        kernels needing v then read."""
        entry = next(o for o in job.outs if o[0] is v)  # a job stores each value once
        job.outs[:] = [o for o in job.outs if o is not entry]
        _, ref, index = entry
        self.buffers[v] = (ref, f"out{index}_ptr")
        self.pending.append(Job(f"{self.group.name}_out{index}", [entry]))

    def request(self, job: Job) -> KernelRequest:
        stored = {id(v) for v, _, _ in job.outs}
        params = {v: Param(pname, ref.dtype, ref.shape)
                  for v, (ref, pname) in self.buffers.items()
                  if id(v) not in stored or v in self.group.body.inputs}
        outs = [(v, Param(job.out_name(k), ref.dtype, ref.shape))
                for k, (v, ref, _) in enumerate(job.outs)]
        (out, out_param), extra = outs[0], outs[1:]
        return KernelRequest(job.name, self.group.name, out, params, out_param, self.options,
                             LOWERING, self.sites, extra)

    def _split_non_pointwise(self, job: Job, req: KernelRequest) -> bool:
        """Yields a joint kernel cannot compute (a reduction, a GEMM) leave it; True if any
        did. One is kept when none can stay."""
        if len(job.outs) == 1:
            return False
        params = set(req.params)
        odd = [v for v, _, _ in job.outs if kind_of(v, cone(v, params)) != "pointwise"]
        if len(odd) == len(job.outs):
            odd = odd[1:]
        for v in odd:
            self.split_off(job, v)
        return bool(odd)

    def generate(self, job: Job) -> GeneratedKernel:
        """Generate, materializing each value that conflicts, until a kernel comes out."""
        for _ in range(len(self.group.body.nodes) + len(job.outs) + 1):
            req = self.request(job)
            if self._split_non_pointwise(job, req):
                continue  # ask again: the others now read what left from its buffer
            kind = "pointwise" if len(job.outs) > 1 else \
                kind_of(req.out, cone(req.out, set(req.params)))
            mark = len(self.sites)
            try:
                return GENERATORS[kind](req)
            except Conflict as c:
                del self.sites[mark:]
                if len(job.outs) > 1 and any(c.value is v for v, _, _ in job.outs):
                    self.split_off(job, c.value)
                elif c.value is req.out or c.value in self.buffers:
                    raise AssertionError(f"triton: cannot generate {self.group.name}: "
                                         f"{c.value} conflicts with itself ({c})") from None
                else:
                    self.materialize(c.value)
        raise AssertionError(f"triton: planning {self.group.name} did not converge")

    def first_jobs(self) -> list[Job]:
        """The yields to store (those with a buffer that holds something): one joint job
        when they share a shape, else one job each. A value yielded twice is stored by a
        second job that computes it again (its buffer is not an input of the first)."""
        outs = [(v, ref, i) for i, (v, ref) in
                enumerate(zip(self.group.body.outputs, self.group.out_refs))
                if ref is not None and ref.numel > 0]
        firsts = {}
        for o in outs:
            firsts.setdefault(id(o[0]), o)
        joint = list(firsts.values())
        alone = [o for o in outs if firsts[id(o[0])] is not o]
        if len({v.shape for v, _, _ in joint}) > 1:
            joint, alone = joint[:1], joint[1:] + alone
        jobs = [Job(self.group.name, joint)] if joint else []
        return jobs + [Job(f"{self.group.name}_out{o[2]}", [o]) for o in alone]

    def plan(self) -> list[Kernel]:
        self.pending = self.first_jobs()
        made: list[tuple[int, Kernel]] = []
        while self.pending:
            job = self.pending.pop()
            generated = self.generate(job)
            made.append((self._rank(job), self._kernel(job, generated)))
        return [k for _, k in sorted(made, key=lambda p: p[0])]

    def _rank(self, job: Job) -> int:
        """Where the job's kernel runs: after every value it stores is computable, i.e. at
        the last of them in body order (body inputs count as last: copies read nothing)."""
        return max(self.order.get(id(v), len(self.order)) for v, _, _ in job.outs)

    def _kernel(self, job: Job, gen: GeneratedKernel) -> Kernel:
        by_name = {pname: bref for bref, pname in self.buffers.values()}
        by_name.update((job.out_name(k), ref) for k, (_, ref, _) in enumerate(job.outs))
        by_name["err_ptr"] = BufferRef("error", 0, "int64", (1 + 2 * len(self.sites),))
        launches = [Launch(g.fn, [by_name[p] for p in g.params], g.grid, g.meta, g.num_warps,
                           g.configs) for g in gen.launches]
        values = [v for v, _, _ in job.outs]
        nodes = joint_cone(values, set(self.buffers) - set(values))
        refs = [ref for _, ref, _ in job.outs]
        return Kernel(job.name, self.group.name, self.group.position,
                      [n.op.name for n in nodes], [n.loc for n in nodes if n.loc], gen.kind,
                      gen.source, launches, refs[0], refs[1:])


def plan_group(group: Group, options: TritonOptions, sites: list,
               storage: Callable[[Value], str]) -> list[Kernel]:
    """The kernels computing one group, in dependency order."""
    return GroupPlanner(group, options, sites, storage).plan()
