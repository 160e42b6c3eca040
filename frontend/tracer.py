"""trace(fn_or_module, *specs) -> Graph.

Runs `forward` (or the function) on symbolic Tensors and records every op. Python control
flow runs at trace time (loops unroll); branching on tensor data raises a TraceError naming
the line. A module's parameters become `param` inputs and its buffers `state` inputs, named
as in its state_dict, carrying their current values.
"""
from __future__ import annotations

import sys

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dlc.errors import ShapeError, TraceError
from dlc.ir.builder import Builder
from dlc.ir.graph import Graph
from dlc.ir.types import TensorType, canonical_dtype
from dlc.tensor import Tensor


@dataclass(frozen=True)
class TensorSpec:
    """The shape and dtype of one traced input (and optionally its name)."""
    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        if any(d < 0 for d in self.shape):
            label = f"TensorSpec {self.name!r}" if self.name else "TensorSpec"
            raise ShapeError(f"{label}: negative dimension in shape {self.shape}")

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)


class _Trace:
    def __init__(self, builder: Builder):
        self.builder = builder
        self.bindings: dict[int, Tensor] = {}
        self.paths: dict[int, str] = {}
        self.seed: Tensor | None = None
        self.state_updates: dict[int, Tensor] = {}


_ACTIVE: list[_Trace] = []


def is_tracing() -> bool:
    return bool(_ACTIVE)


def bound_tensor(array):
    """Inside a trace, the Tensor standing for a module's array; outside, the array."""
    if _ACTIVE and array is not None:
        t = _ACTIVE[-1].bindings.get(id(array))
        if t is not None:
            return t
    return array


def seed_tensor() -> Tensor:
    """The graph's `seed` input (int64 scalar) that drives dropout and random ops."""
    if not _ACTIVE:
        raise TraceError("random ops need a trace (the seed is a graph input)")
    tr = _ACTIVE[-1]
    if tr.seed is None:
        tr.seed = Tensor(tr.builder.add_input("seed", TensorType((), "int64"), "input"))
    return tr.seed


def update_state(array, new_value: Tensor) -> None:
    """Record a new value for a module buffer (BatchNorm running stats in training mode).

    The traced graph returns it as an extra output aliased to the buffer's `state` input, so
    an Executable updates its stored state on every call."""
    if not _ACTIVE:
        raise TraceError("update_state is only meaningful inside a trace")
    _ACTIVE[-1].state_updates[id(array)] = new_value


@contextmanager
def layer_scope(module):
    if not _ACTIVE:
        yield
        return
    tr = _ACTIVE[-1]
    path = tr.paths.get(id(module))
    label = f"{path} ({type(module).__name__})" if path else type(module).__name__
    tr.builder.layer_locs.append(getattr(module, "_defined_at", None))
    try:
        with tr.builder.scope(label):
            yield
    finally:
        tr.builder.layer_locs.pop()


def _as_spec(spec: Any, index: int) -> TensorSpec:
    if isinstance(spec, TensorSpec):
        return spec
    if isinstance(spec, TensorType):
        return TensorSpec(spec.shape, spec.dtype)
    if isinstance(spec, np.ndarray):
        return TensorSpec(spec.shape, spec.dtype.name)
    if isinstance(spec, (tuple, list)) and all(isinstance(d, int) for d in spec):
        return TensorSpec(tuple(spec))
    raise TraceError(f"input spec {index} must be a dlc.TensorSpec, a numpy array or a "
                     f"shape tuple, got {type(spec).__name__}")


def _input_names(fn: Callable, n: int) -> list[str]:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params[:n]]
    except (TypeError, ValueError):
        names = []
    return names + [f"x{i}" for i in range(len(names), n)]


def trace(fn_or_module, *specs, name: str | None = None, module=None) -> Graph:
    """Trace a Module or a function on inputs described by `specs` into a Graph.

    `module`: when tracing a plain function that calls a Module (a loss around a model),
    the Module whose parameters and buffers become graph inputs."""
    from frontend.nn.module import Module
    is_module = isinstance(fn_or_module, Module)
    fn = fn_or_module.forward if is_module else fn_or_module
    if name is None:
        name = type(fn_or_module).__name__ if is_module else getattr(fn, "__name__", "main")
        name = name if name.isidentifier() else "main"
    builder = Builder(name)
    builder.entry_frame = sys._getframe()
    tr = _Trace(builder)
    specs = [_as_spec(s, i) for i, s in enumerate(specs)]
    names = _input_names(fn, len(specs))
    args = [Tensor(builder.add_input(s.name or n, s.type, "input"))
            for s, n in zip(specs, names)]
    if is_module or module is not None:
        _bind_module(tr, fn_or_module if is_module else module)
    _ACTIVE.append(tr)
    try:
        with builder:
            result = fn_or_module(*args)
            by_id = {id(v.data): v for v in builder.inputs if v.role == "state"}
            updates = {by_id[k].name: t.cast(by_id[k].dtype)
                       for k, t in tr.state_updates.items()}
    finally:
        _ACTIVE.pop()
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    values = []
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TraceError(f"{name} returned {type(o).__name__} as output {i}; "
                             f"outputs must be tensors computed from the inputs")
        values.append(o.value)
    aliases = {}
    for state_name, t in updates.items():
        aliases[len(values)] = state_name
        values.append(t.value)
    return builder.finish(values, aliases)


def _bind_module(tr: _Trace, module) -> None:
    for path, m in module.named_modules():
        tr.paths[id(m)] = path
    for pname, array in module.named_parameters():
        v = tr.builder.add_input(pname, TensorType(array.shape, array.dtype.name), "param",
                                 array)
        tr.bindings[id(array)] = Tensor(v)
    for bname, array in module.named_buffers():
        if id(array) in tr.bindings:
            continue
        v = tr.builder.add_input(bname, TensorType(array.shape, array.dtype.name), "state",
                                 array)
        tr.bindings[id(array)] = Tensor(v)
