"""The llvm Executable: one foreign call into the compiled entry function per call.

The base class checks every user array before `run`, so a wrong shape or dtype never
reaches native code. `run` passes pointers: user inputs (made contiguous if they are not),
the parameter/state arrays the Executable owns (never copied), fresh output arrays (or the
caller's, with `out=`), and the arena, allocated once. ctypes releases the GIL during the
call; a lock makes calls from several Python threads take turns (they share the arena).
"""
from __future__ import annotations

import ctypes
import sys
import threading
from typing import Sequence

import numpy as np

from dlc.errors import ArgumentError, DlcError
from dlc.ir.graph import Graph
from backends.executable import Executable
from backends.llvm.codegen import ENTRY, ERR_SLOTS, NONFINITE
from backends.llvm.lower import Program

ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.c_void_p] * 5))
INDEX_ERROR = 1


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def aligned_empty(shape: tuple, dtype: str) -> np.ndarray:
    """An uninitialized array whose data starts on a 64-byte boundary (numpy only promises
    16): rows of whole cache lines stay whole, so streamed stores never split a line."""
    return _placed(shape, dtype, 64, 0)


# A load waits on an earlier store whose address matches it in the low 12 bits (the core
# compares page offsets first: "4K aliasing"). A loop that stores a little ahead, in page
# offset, of where it loads next hits that on every vector: measured, ew_chain 30% slower
# with its output 48 bytes past its inputs' page offset (numpy's big arrays start 16 bytes
# into a page, a 64-aligned array at 64). Big outputs are placed half a page from their
# inputs instead, at the same offset within a cache line, so that the loop that aligns its
# stores aligns its loads too.
PAGE = 4096
PLACED_MIN_BYTES = 16 * PAGE


def output_empty(shape: tuple, dtype: str, near: int | None) -> np.ndarray:
    """An uninitialized output array; `near` is the address of the input its kernel most
    likely streams from (None: no input worth matching)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if near is None or nbytes < PLACED_MIN_BYTES:
        return aligned_empty(shape, dtype)
    return _placed(shape, dtype, PAGE, (near + PAGE // 2) % PAGE)


def _placed(shape: tuple, dtype: str, modulus: int, offset: int) -> np.ndarray:
    """An uninitialized array whose data address is `offset` modulo `modulus`."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + modulus, dtype=np.uint8)
    start = (offset - _address(raw)) % modulus
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class LLVMExecutable(Executable):
    backend = "llvm"

    def __init__(self, graph: Graph, program: Program, jit, threads: int,
                 params: dict | None = None, on_nonfinite: str = "raise"):
        super().__init__(graph, params, on_nonfinite)
        self.program, self.jit, self.threads = program, jit, threads
        self._entry = ENTRY_TYPE(jit.address(ENTRY))
        raw = np.zeros(program.arena_bytes + 64, dtype=np.uint8)
        start = (-_address(raw)) % 64
        self._arena_raw = raw
        self.arena = raw[start:start + program.arena_bytes]
        self._err = np.zeros(ERR_SLOTS, dtype=np.int64)  # all zero between calls
        self._inputs = (ctypes.c_void_p * max(program.n_inputs, 1))()
        self._params = (ctypes.c_void_p * max(program.n_params, 1))()
        self._outputs = (ctypes.c_void_p * max(len(graph.outputs), 1))()
        self._lock = threading.RLock()
        self._user_positions = [i for i, v in enumerate(graph.inputs) if v.role == "input"]
        self._param_positions = [i for i, v in enumerate(graph.inputs) if v.role != "input"]
        self._out_types = [(v.type.shape, v.type.dtype) for v in graph.outputs]
        # the last array seen in each input/param slot and its address (arrays are often
        # passed again: the address lookup is the costly part of a small call)
        self._seen_in = [(None, 0)] * program.n_inputs
        self._seen_param = [(None, 0)] * program.n_params
        self._pointers = (ctypes.addressof(self._inputs), ctypes.addressof(self._outputs),
                          ctypes.addressof(self._params), _address(self.arena),
                          _address(self._err))
        self._out_override: list | None = None
        # weights that GEMMs keep packed in the arena between calls (Program.prepack_bytes):
        # read-only, so that a change is a new array, which clears the packed copies
        start, stop = program.prepack_bytes
        self._packed_region = self.arena[start:stop]
        # param slot -> the read-only array of its own this Executable packs from
        self._own_weights: dict[int, np.ndarray] = {}
        for k, pos in enumerate(self._param_positions):
            if graph.inputs[pos].name in program.prepacked_params:
                a = self._own_weights[k] = self.state[graph.inputs[pos].name]
                a.flags.writeable = False
        # alias outputs not updated in place are written into a spare array, which then
        # becomes the state; the array it replaces is the next call's spare (no copies,
        # no allocation per step)
        self._spares: dict[int, np.ndarray] = {}
        # the arrays outputs were last returned in (reused once the caller drops them)
        self._returned: dict[int, np.ndarray] = {}
        # per call, decided once: the outputs the code computes (with the param it updates
        # in place, if any), those returned in arrays of their own, whether any is a copy
        sources = program.output_sources
        self._computed = [(j, program.inplace.get(j)) for j, (kind, _) in sources.items()
                          if kind == "node"]
        self._fresh = [j for j, updated in self._computed
                       if updated is None and j not in graph.aliases]
        self._copied = any(kind != "node" for kind, _ in sources.values())
        self._seen_out = [(None, 0)] * len(graph.outputs)

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args, out: np.ndarray | Sequence[np.ndarray] | None = None):
        """exe(*arrays) -> outputs; `out=` gives arrays to write the returned outputs into
        (one array, or one per returned output, each of exactly its type)."""
        # one call at a time: the pointer tables, the arena and the spares are shared
        with self._lock:
            if out is None:
                return super().__call__(*args)
            outs = [out] if isinstance(out, np.ndarray) else list(out)
            self._out_override = self._check_out(outs)
            try:
                return super().__call__(*args)
            finally:
                self._out_override = None

    def _check_out(self, outs: list) -> dict:
        if len(outs) != len(self.returned):
            raise ArgumentError(f"out= needs {len(self.returned)} array(s), got {len(outs)}")
        given = {}
        for j, a in zip(self.returned, outs):
            shape, dtype = self._out_types[j]
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype.name != dtype \
                    or not a.flags.c_contiguous or not a.flags.writeable:
                raise ArgumentError(f"out= array for output {j}: expected a writable "
                                    f"C-contiguous {dtype} array of shape {shape}")
            given[j] = a
        return given

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        prog = self.program
        keep = []  # contiguous copies of strided inputs, alive through the call
        for k, pos in enumerate(self._user_positions):
            a = inputs[pos]
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
                keep.append(a)
            self._inputs[k] = self._slot(self._seen_in, k, a)
        for k, pos in enumerate(self._param_positions):
            a = inputs[pos]
            if k in self._own_weights and self._seen_param[k][0] is not a:
                a = self._new_packed_weight(k, a)
            self._params[k] = self._slot(self._seen_param, k, a)
        results: list = [None] * len(self._out_types)
        override = self._out_override or {}
        for j, updated in self._computed:
            if updated is not None:
                results[j] = self.state[updated]
            else:
                shape, dtype = self._out_types[j]
                results[j] = override.get(j)
                if results[j] is None:
                    results[j] = self._spares.pop(j, None)
                if results[j] is None:
                    results[j] = self._unclaimed(j)
                if results[j] is None:
                    results[j] = output_empty(shape, dtype, self._largest_input(inputs))
            self._outputs[j] = self._slot(self._seen_out, j, results[j])
        status = self._entry(*self._pointers)
        if status != 0:
            err = self._err.copy()
            self._err[:] = 0
        del keep
        if status == NONFINITE:
            # the loss is not finite: nothing was updated; the base class reports or skips
            for j, name in self.graph.aliases.items():
                results[j] = self.state[name]
            return results
        if status != 0:
            raise self._error(status, err)
        if self._copied or override:
            self._fill_copies(results, inputs)
        self._recycle(results)
        for j in self._fresh:
            if j not in override:
                self._returned[j] = results[j]
        return results

    def _new_packed_weight(self, k: int, a: np.ndarray) -> np.ndarray:
        """A weight that GEMMs keep packed is a different array than at the last call (the
        first call, load_state_dict, or an assignment to exe.state): the packed copies are
        cleared, so that this call packs them again, and the state keeps a read-only array
        of its own (edits to the caller's array cannot then go unseen)."""
        self._packed_region[:] = 0
        if a is not self._own_weights[k]:
            a = np.array(a, order="C", copy=True)
            a.flags.writeable = False
            self._own_weights[k] = self.state[self.graph.inputs[self._param_positions[k]].name] = a
        return a

    def _largest_input(self, inputs: list[np.ndarray]) -> int | None:
        """The address of the largest user input, the first of equals (the stream an output
        most likely runs beside), or None without one."""
        sizes = [(inputs[pos].nbytes, -k) for k, pos in enumerate(self._user_positions)]
        return self._seen_in[-max(sizes)[1]][1] if sizes else None

    def _unclaimed(self, j: int) -> np.ndarray | None:
        """The array output j was returned in last time, if the caller has let go of it
        (no reference but ours: not the array, nor a view of it). Reusing it spares the
        allocation, and for large outputs the page faults of fresh memory on every call."""
        a = self._returned.pop(j, None)
        if a is None:
            return None
        # references: `a` here, getrefcount's argument, and the address cache's
        ours = 3 if self._seen_out[j][0] is a else 2
        if sys.getrefcount(a) > ours:
            return None
        # a view the caller kept refers to the memory's owner (numpy collapses bases); the
        # owner's references here: `a`'s base, `owner`, getrefcount's argument
        owner = a.base
        return a if owner is None or sys.getrefcount(owner) <= 3 else None

    @staticmethod
    def _slot(seen: list, k: int, a: np.ndarray) -> int:
        obj, addr = seen[k]
        if obj is not a:
            addr = _address(a)
            seen[k] = (a, addr)
        return addr

    def _recycle(self, results: list) -> None:
        """Keep the state arrays that the aliased outputs are about to replace."""
        aliases = self.graph.aliases
        if not aliases:
            return
        if self.graph.meta.get("train_step") and not np.all(np.isfinite(results[0])):
            for j in aliases:  # the step is skipped: its outputs stay spare
                if j not in self.program.inplace and results[j] is not None:
                    self._spares[j] = results[j]
            return
        for j, name in aliases.items():
            old = self.state.get(name)
            if j not in self.program.inplace and old is not None and old is not results[j] \
                    and self.program.output_sources.get(j, ("", None))[0] == "node":
                self._spares[j] = old

    def _fill_copies(self, results: list, inputs: list) -> None:
        by_name = {v.name: a for v, a in zip(self.graph.inputs, inputs)}
        for j, (kind, src) in self.program.output_sources.items():
            if kind == "copy":
                results[j] = results[src].copy()
            elif kind == "input":
                results[j] = np.array(by_name[src], copy=True)
        for j, a in (self._out_override or {}).items():
            if results[j] is not a:
                np.copyto(a, results[j])
                results[j] = a

    def _error(self, status: int, err: np.ndarray) -> DlcError:
        node = self.program.kernel_nodes[int(err[ERR_SLOTS - 1])]
        where = f" {node.where()}" if node is not None else ""
        name = node.op.name if node is not None else "kernel"
        if status == INDEX_ERROR:
            axis, index, size = (int(v) for v in err[1:4])
            valid = f"{-size}..{size - 1}" if size else "none: the axis is empty"
            return DlcError(f"{name}{where}: index {index} is out of range for axis {axis} "
                            f"of size {size} (valid: {valid})")
        return DlcError(f"{name}{where}: native code reported error {status}")

    # -- inspection -------------------------------------------------------------------------
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the whole module."""
        return self.jit.optimized_ir()

    def kernels(self) -> list[tuple[str, str]]:
        """(function name, origin: the op or fused group and the user's file:line)."""
        return [(k.name, k.origin) for k in self.program.spec.kernels]
