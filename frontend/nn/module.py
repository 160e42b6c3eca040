"""nn.Module: parameters as numpy arrays, PyTorch's naming and state_dict conventions.

Outside a trace, `module.weight` is the numpy array. Inside `dlc.trace`, the same attribute
reads as the symbolic Tensor of the graph input that holds it, so `forward` is written once.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

import numpy as np

from dlc.errors import DlcError
from dlc.ir.builder import user_loc


class Parameter:
    """Marks an array as a trainable parameter when assigned to a Module attribute."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = np.array(data, order="C")


class Module:
    """Base class of layers and models. Subclasses define `forward`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_path", "")
        # the user's line that built this layer: the loc of its nodes when no frame of the
        # user's is on the stack at trace time (a library layer called by another)
        object.__setattr__(self, "_defined_at", user_loc())

    # -- attribute registry -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise DlcError(f"{type(self).__name__}.__init__ must call super().__init__() "
                           f"before assigning attributes")
        for table in ("_parameters", "_buffers", "_modules"):
            self.__dict__[table].pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value.data
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = None if value is None else np.asarray(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for table in ("_parameters", "_buffers"):
            if name in d.get(table, ()):
                array = d[table][name]
                from frontend.tracer import bound_tensor
                return bound_tensor(array)
        if name in d.get("_modules", ()):
            return d["_modules"][name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for table in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__[table]:
                del self.__dict__[table][name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, data) -> None:
        if data is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
            return
        setattr(self, name, Parameter(data))

    def register_buffer(self, name: str, data, persistent: bool = True) -> None:
        names = self.__dict__.setdefault("_buffer_names", set())
        names.add(name)
        if not persistent:
            self.__dict__.setdefault("_nonpersistent", set()).add(name)
        self._buffers[name] = None if data is None else np.array(data, order="C")

    # -- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator["Module"]:
        return iter(m for m in self._modules.values() if m is not None)

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        return iter((k, m) for k, m in self._modules.items() if m is not None)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[np.ndarray]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers():
            yield b

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # -- state dict --------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and persistent buffers, keyed as PyTorch keys them."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mname, m in self.named_modules():
            skip = m.__dict__.get("_nonpersistent", set())
            for table in (m._parameters, m._buffers):
                for name, value in table.items():
                    if value is not None and name not in skip:
                        out[f"{mname}.{name}" if mname else name] = value.copy()
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Load arrays by key; shapes must match. Accepts anything np.asarray takes."""
        own = {}
        for mname, m in self.named_modules():
            for table in ("_parameters", "_buffers"):
                for name, value in getattr(m, table).items():
                    if value is None:
                        continue
                    own[f"{mname}.{name}" if mname else name] = (m, table, name)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise DlcError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        for key, value in state.items():
            if key not in own:
                continue
            m, table, name = own[key]
            old = getattr(m, table)[name]
            value = np.asarray(value)
            if old is not None and value.shape != old.shape:
                raise DlcError(f"load_state_dict: {key} has shape {value.shape}, the model "
                               f"expects {old.shape}")
            dtype = old.dtype if old is not None else value.dtype
            getattr(m, table)[name] = np.array(value, dtype=dtype, order="C")

    # -- modes and calls ---------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        from frontend.tracer import layer_scope
        with layer_scope(self):
            return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + ("\n)" if len(lines) > 1 else ")")
