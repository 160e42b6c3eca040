"""Table-driven op cases: one Case per (op, input shapes, attrs), checked against torch.

Each op module has a `tests/ops/cases_<module>.py` that calls `case(...)`. The tests in
test_op_table.py run every case in float32 and float64 on fresh random inputs, compare eager
(the op's numpy reference) with the torch oracle, check the dtype/shape rule, and check that
every op in the table has at least one case.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dlc.ir.builder import Builder
from dlc.ir.types import TensorType

Gen = Callable[[np.random.Generator, str], np.ndarray]


@dataclass
class Case:
    op: str
    inputs: list[Gen]
    attrs: dict[str, Any]
    torch_ref: Callable[..., Any]      # torch_ref(*torch_tensors, **attrs) -> torch.Tensor
    dtypes: tuple[str, ...] = ("float32", "float64")
    rtol: float | None = None          # None: the defaults by dtype below
    atol: float | None = None
    id: str = ""
    grad: bool = True                  # take part in VJP checks (autodiff issue)
    extra: dict = field(default_factory=dict)

    def make_inputs(self, rng: np.random.Generator, dtype: str) -> list[np.ndarray]:
        return [g(rng, dtype) for g in self.inputs]

    def build(self, arrays: list[np.ndarray]):
        """A one-node graph applying the op to inputs of the arrays' types."""
        with Builder(self.op) as b:
            ins = [b.add_input(f"a{i}", TensorType(a.shape, a.dtype.name))
                   for i, a in enumerate(arrays)]
            node = b.emit(self.op, tuple(ins), dict(self.attrs))
        return b.finish([node])


CASES: list[Case] = []
TOL = {"float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12), "float16": (1e-2, 1e-3)}


def assert_allclose(actual, desired, rtol: float = 1e-7, atol: float = 0.0,
                    err_msg: str = "") -> None:
    """np.testing.assert_allclose, except that a NaN on either side fails (numpy's default
    equal_nan=True would let a NaN in both pass). Tests that expect NaN at given places
    compare np.isnan masks and then call numpy's form with equal_nan=True."""
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, equal_nan=False,
                               err_msg=err_msg)


def case(op: str, inputs: list[Gen], torch_ref, attrs: dict | None = None, **kw) -> Case:
    c = Case(op, inputs, dict(attrs or {}), torch_ref, **kw)
    c.id = c.id or f"{op}-{sum(1 for x in CASES if x.op == op)}"
    CASES.append(c)
    return c


# -- input generators: called with (rng, float dtype of the case) ---------------------------
# np.asarray keeps a 0-d draw an array: numpy returns a scalar for shape (), which cannot be
# perturbed in place by the finite-difference checks
def randn(*shape: int, scale: float = 1.0) -> Gen:
    return lambda rng, dt: np.asarray(rng.standard_normal(shape) * scale).astype(dt)


def uniform(lo: float, hi: float, *shape: int) -> Gen:
    return lambda rng, dt: np.asarray(rng.uniform(lo, hi, shape)).astype(dt)


def positive(*shape: int) -> Gen:
    return uniform(0.1, 3.0, *shape)


def randint(lo: int, hi: int, *shape: int, dtype: str = "int64") -> Gen:
    return lambda rng, dt: np.asarray(rng.integers(lo, hi, shape)).astype(dtype)


def boolean(*shape: int) -> Gen:
    return lambda rng, dt: np.asarray(rng.random(shape) < 0.5)


def fixed(array) -> Gen:
    """A fixed array (cast to the case dtype if it is floating)."""
    a = np.asarray(array)
    return lambda rng, dt: a.astype(dt) if a.dtype.kind == "f" else a.copy()
