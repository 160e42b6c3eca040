"""The op table: one record per op.

Each OpDef holds the op's attribute schema, its shape/dtype rule (`infer`), its numpy
reference (`impl`, the eager semantics), its fusion `kind`, and optionally its VJP and a
decomposition into primitives. Backends keep their own lowering tables keyed by op name.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from dlc.errors import ShapeError
from dlc.ir.types import TensorType, canonical_dtype


class Kind(enum.Enum):
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"
    MOVEMENT = "movement"
    CONTRACTION = "contraction"
    OPAQUE = "opaque"


ELEMENTWISE, REDUCTION, MOVEMENT = Kind.ELEMENTWISE, Kind.REDUCTION, Kind.MOVEMENT
CONTRACTION, OPAQUE = Kind.CONTRACTION, Kind.OPAQUE

REQUIRED = object()
ATTR_KINDS = ("int", "float", "bool", "str", "ints", "floats", "dtype")


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its name, value kind and default (REQUIRED if none)."""
    name: str
    kind: str
    default: Any = REQUIRED

    def coerce(self, value: Any, op: str) -> Any:
        """Turn a Python value into this attribute's canonical form, or raise ShapeError."""
        try:
            if self.kind == "int":
                if isinstance(value, bool) or int(value) != value:
                    raise TypeError
                return int(value)
            if self.kind == "float":
                return float(value)
            if self.kind == "bool":
                if not isinstance(value, (bool, int)) or value not in (0, 1):
                    raise TypeError
                return bool(value)
            if self.kind == "str":
                if not isinstance(value, str):
                    raise TypeError
                return value
            if self.kind == "ints":
                if isinstance(value, (int,)) and not isinstance(value, bool):
                    value = (value,)
                out = tuple(int(v) for v in value)
                if any(o != v for o, v in zip(out, value)):
                    raise TypeError
                return out
            if self.kind == "floats":
                if isinstance(value, (int, float)):
                    value = (value,)
                return tuple(float(v) for v in value)
            if self.kind == "dtype":
                return canonical_dtype(value)
        except (TypeError, ValueError) as e:
            raise ShapeError(f"{op}: attribute {self.name} expects {self.kind}, "
                             f"got {value!r}") from e
        raise AssertionError(f"unknown attribute kind {self.kind}")


InferFn = Callable[[list[TensorType], dict], TensorType]


@dataclass
class OpDef:
    """The single record of an op. See the module docstring."""
    name: str
    kind: Kind
    infer: InferFn
    impl: Callable[..., Any]
    attrs: tuple[Attr, ...] = ()
    arity: int | tuple[int, int | None] = 1  # exact count, or (min, max or None)
    # normalize(types, attrs) -> attrs: canonical attrs given input types (axes >= 0, ...)
    normalize: Callable[[list[TensorType], dict], dict] | None = None
    # vjp(g, out, inputs, attrs) -> one gradient Tensor (or None: zero) per input; written
    # with the Tensor API so gradients are graphs too.
    vjp: Callable | None = None
    # decompose(inputs, attrs) -> Tensor built from primitives.
    decompose: Callable | None = None
    # infer_values(input values, attrs) -> type, for an op whose type depends on what its
    # operands are, not only on their types (`result`: an output of the fused node it reads);
    # the builder, the verifier and the parser then call it instead of `infer`
    infer_values: Callable[[tuple, dict], TensorType] | None = None
    # indices of inputs that carry no gradient (labels, indices, seeds); an op whose every
    # input is listed (or that has none) is not differentiable and needs no VJP
    nondiff: tuple[int, ...] = ()
    doc: str = ""
    attr_map: dict[str, Attr] = field(init=False, repr=False)

    def __post_init__(self):
        self.attr_map = {a.name: a for a in self.attrs}

    @property
    def differentiable(self) -> bool:
        """Whether a gradient can flow through the op: some input is not in `nondiff`."""
        most = self.arity if isinstance(self.arity, int) else self.arity[1]
        return most is None or any(i not in self.nondiff for i in range(most))

    def check_arity(self, n: int) -> None:
        lo, hi = (self.arity, self.arity) if isinstance(self.arity, int) else self.arity
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else f"{lo}..{'' if hi is None else hi}"
            raise ShapeError(f"{self.name} takes {want} inputs, got {n}")

    def infer_for(self, inputs: tuple, attrs: dict) -> TensorType:
        """The type of this op applied to the values `inputs` with canonical `attrs`."""
        if self.infer_values is not None:
            return self.infer_values(tuple(inputs), attrs)
        return self.infer([v.type for v in inputs], attrs)

    def canonical_attrs(self, types: list[TensorType], attrs: dict) -> dict:
        """Fill defaults, coerce kinds, reject unknown names, then op-specific normalize."""
        unknown = set(attrs) - set(self.attr_map)
        if unknown:
            raise ShapeError(f"{self.name}: unknown attribute(s) {sorted(unknown)}; "
                             f"expected {[a.name for a in self.attrs]}")
        out = {}
        for a in self.attrs:
            if a.name in attrs:
                value = attrs[a.name]
                out[a.name] = value if value is None and a.default is None else \
                    a.coerce(value, self.name)
            elif a.default is REQUIRED:
                raise ShapeError(f"{self.name}: missing required attribute {a.name}")
            else:
                out[a.name] = a.default
        if self.normalize is not None:
            out = self.normalize(types, out)
        return out


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} registered twice")
    OPS[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise ShapeError(f"unknown op {name!r}") from None
