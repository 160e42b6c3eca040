"""The Executable contract shared by every backend.

`exe(*arrays)` checks the user inputs (count, shape, dtype; non-contiguous arrays are fine),
binds parameters and state kept inside the Executable, runs, writes aliased outputs (updated
params/state of a training step) back into the Executable, and returns the other outputs:
one array, or a tuple.

A training step (graph.meta["train_step"], built by dlc.train_step) is checked after it
runs: a NaN or Inf loss leaves params and state untouched and raises NonFiniteLossError
naming the step, or with on_nonfinite="skip" is recorded in `skipped_steps`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dlc.errors import ArgumentError, DlcError
from dlc.ir.graph import Graph


class NonFiniteLossError(DlcError):
    """A training step's loss was NaN or Inf; the parameters were not updated."""

    def __init__(self, step: int, loss: float):
        self.step, self.loss = step, loss
        super().__init__(f"training step {step}: the loss is {loss} (NaN or Inf in the loss "
                         f"or its gradients); parameters were not updated (compile with "
                         f"on_nonfinite='skip' to skip such steps)")


class Executable:
    backend = "abstract"

    def __init__(self, graph: Graph, params: dict[str, np.ndarray] | None = None,
                 on_nonfinite: str = "raise"):
        if on_nonfinite not in ("raise", "skip"):
            raise ArgumentError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.skipped_steps: list[int] = []
        self.graph = graph
        self.user_inputs = graph.user_inputs
        self.state: dict[str, np.ndarray] = {}
        given = dict(params or {})
        for v in graph.inputs:
            if v.role == "input":
                continue
            data = given.pop(v.name, v.data)
            if data is None:
                raise ArgumentError(f"no value for {v.role} {v.name!r} ({v.type}): pass it "
                                    f"in params=")
            self.state[v.name] = self._check(v, data, f"{v.role} {v.name!r}").copy()
        if given:
            raise ArgumentError(f"params for unknown inputs: {', '.join(sorted(given))}")
        self.returned = [i for i in range(len(graph.outputs)) if i not in graph.aliases]

    @staticmethod
    def _check(v, array, what: str) -> np.ndarray:
        if type(array) is np.ndarray and array.shape == v.type.shape and \
                array.dtype == v.type.dtype:
            return array  # the common case, decided without the checks below
        if np.isscalar(array) or isinstance(array, (bool, int, float)):
            array = np.asarray(array, dtype=v.type.dtype)
        if not isinstance(array, np.ndarray):
            if hasattr(array, "__array__"):
                array = np.asarray(array)
            else:
                raise ArgumentError(f"{what}: expected a numpy array {v.type}, got "
                                    f"{type(array).__name__}")
        if array.shape != v.type.shape or array.dtype.name != v.type.dtype:
            raise ArgumentError(f"{what}: expected {v.type} ({v.type.dtype}, shape "
                                f"{v.type.shape}), got {array.dtype.name}, shape "
                                f"{array.shape}")
        return array

    def bind(self, args: Sequence) -> list[np.ndarray]:
        """All graph inputs in order: user arrays checked, params/state from the store."""
        if len(args) != len(self.user_inputs):
            names = ", ".join(f"{v.name}: {v.type}" for v in self.user_inputs)
            raise ArgumentError(f"expected {len(self.user_inputs)} input array(s) ({names}), "
                                f"got {len(args)}")
        user = iter(args)
        out = []
        for pos, v in enumerate(self.graph.inputs):
            if v.role == "input":
                out.append(self._check(v, next(user), f"argument {pos} ({v.name!r})"))
            else:
                out.append(self.state[v.name])
        return out

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, *args):
        results = self.run(self.bind(args))
        if self.graph.meta.get("train_step") and not np.all(np.isfinite(results[0])):
            self.nonfinite_loss(results[0], int(self.state.get("optim.step", 0)))
            return results[0]
        for i, name in self.graph.aliases.items():
            self.state[name] = results[i]
        ret = [results[i] for i in self.returned]
        return ret[0] if len(ret) == 1 else tuple(ret)

    def nonfinite_loss(self, loss, optimizer_steps: int) -> None:
        """A training step whose loss is NaN or Inf: raise NonFiniteLossError naming the step
        (the count of calls, 1-based), or with on_nonfinite='skip' record it in
        `skipped_steps`. Either way the caller leaves params and state as they were."""
        step = optimizer_steps + len(self.skipped_steps) + 1
        if self.on_nonfinite == "raise":
            raise NonFiniteLossError(step, float(np.asarray(loss)))
        self.skipped_steps.append(step)

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Replace stored params/state by name (PyTorch names for traced modules), e.g. to
        evaluate trained weights with an inference Executable. Each array must have the
        input's shape and dtype; with strict=False, names the graph does not take are
        ignored."""
        unknown = [k for k in state if k not in self.state]
        if unknown and strict:
            raise ArgumentError(f"load_state_dict: @{self.graph.name} has no param/state "
                                f"input named {', '.join(sorted(unknown))}")
        for name, array in state.items():
            if name in self.state:
                v = self.graph.input(name)
                self.state[name] = self._check(v, array, f"{v.role} {name!r}").copy()

    def save(self, directory: str, **options):
        """Write this graph with its current parameters and state as an ahead-of-time
        bundle (machine code from the llvm backend, C header, weights, manifest with
        checksums), whichever backend runs it here; `dlc.load(directory)` reads it back.
        `options`: target_cpu, embed_weights, threads, name."""
        from backends.llvm.aot import write_bundle
        return write_bundle(self.graph, directory, params=dict(self.state), **options)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name (PyTorch names for traced modules); for a training
        step, the model's own entries (not the optimizer's moments)."""
        keys = self.graph.meta.get("model_keys")
        if keys is not None:
            return {k: self.state[k].copy() for k in keys if k in self.state}
        return {k: v.copy() for k, v in self.state.items()
                if self.graph.input(k).role in ("param", "state")}
