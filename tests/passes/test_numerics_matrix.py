"""The passes preserve numerics: every op case of the op table and every example model, run
by the eager backend after the O1 and O2 pipelines, matches the same graph at O0 (no passes)
to the float32 tolerance of the op tests (1e-5 relative), on fresh random inputs.

Each op case runs twice: on user inputs (nothing to fold), and with every input a `const`
carrying the same data, so constant folding computes the whole case at compile time.
A small training step (dropout, layer norm, cross-entropy, Adam) checks aliased updates and
random ops over two steps.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc import cli, nn
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType
from tests.ops import harness
from tests.ops.harness import CASES, TOL

for _m in pkgutil.iter_modules([os.path.dirname(harness.__file__)]):
    if _m.name.startswith("cases_"):
        importlib.import_module(f"tests.ops.{_m.name}")

LEVELS = ("O1", "O2")
F32 = "float32"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def assert_matches(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    """Same dtypes and shapes; integers and bools exact; floats to TOL[float32]; a NaN only
    where the O0 result has one."""
    assert len(got) == len(want), what
    rtol, atol = TOL[F32]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, (what, i, g.dtype, g.shape, w.shape)
        if g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"{what} output {i}")
            continue
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w),
                                      err_msg=f"{what} output {i}: NaN positions differ")
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=f"{what} output {i}")


def run_at(graph: dlc.Graph, level: str, args: list[np.ndarray]) -> list[np.ndarray]:
    out = dlc.compile(graph, backend="eager", opt_level=level)(*args)
    return list(out) if isinstance(out, tuple) else [out]


def const_graph(case: harness.Case, arrays: list[np.ndarray]) -> dlc.Graph:
    """The case's op with every input a const carrying its array."""
    with Builder(case.op + "_const") as b:
        ins = [b.add_input(f"c{i}", TensorType(a.shape, a.dtype.name), "const", a)
               for i, a in enumerate(arrays)]
        node = b.emit(case.op, tuple(ins), dict(case.attrs))
    return b.finish([node])


def _op_params():
    for c in CASES:
        if F32 in c.dtypes:
            for level in LEVELS:
                yield pytest.param(c, level, id=f"{c.id}-{level}")


@pytest.mark.parametrize("case,level", list(_op_params()))
def test_op_case_matches_o0(case, level, rng):
    arrays = case.make_inputs(rng, F32)
    graph = case.build(arrays)
    want = run_at(graph, "O0", arrays)
    assert_matches(run_at(graph, level, arrays), want, f"{case.id} at {level}")
    folded = const_graph(case, arrays)
    assert_matches(run_at(folded, level, []), want, f"{case.id} as constants at {level}")


# -- example models ----------------------------------------------------------------------------
def example_files() -> list[Path]:
    """examples/*.py that define main_model()."""
    return sorted(p for p in EXAMPLES.glob("*.py") if "def main_model" in p.read_text())


def load_example(path: Path):
    """main_model() of the file, loaded as the CLI loads it (weights seeded, neighbours
    importable)."""
    loaded = cli.load_model(str(path))
    return loaded.target, loaded.specs


def random_input(rng: np.random.Generator, t: TensorType) -> np.ndarray:
    if t.dtype == "bool":
        return rng.random(t.shape) < 0.5
    if t.dtype.startswith("int"):
        return rng.integers(0, 2, size=t.shape).astype(t.dtype)  # valid labels and indices
    return rng.standard_normal(t.shape).astype(t.dtype)


def test_there_are_example_models():
    assert example_files(), "no examples/*.py defines main_model()"


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_model_matches_o0(path, rng):
    model, specs = load_example(path)
    graph = dlc.trace(model, *specs)
    args = [random_input(rng, v.type) for v in graph.user_inputs]
    want = run_at(graph, "O0", args)
    for level in LEVELS:
        assert_matches(run_at(graph, level, args), want, f"{path.name} at {level}")


# -- a training step ---------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc2(self.drop(nn.functional.relu(self.norm(self.fc1(x)))))


def test_training_step_matches_o0(rng):
    dlc.nn.init.manual_seed(int(rng.integers(1 << 30)))
    step = dlc.train_step(Net(), nn.functional.cross_entropy, dlc.optim.Adam(lr=1e-2),
                          dlc.TensorSpec((8, 12)), dlc.TensorSpec((8,), "int64"))
    exes = {level: dlc.compile(step, opt_level=level) for level in ("O0",) + LEVELS}
    for _ in range(2):
        x = rng.standard_normal((8, 12)).astype(np.float32)
        y = rng.integers(0, 5, 8).astype(np.int64)
        want = [np.asarray(exes["O0"](x, y))]
        for level in LEVELS:
            assert_matches([np.asarray(exes[level](x, y))], want, f"loss at {level}")
    for level in LEVELS:
        got, ref = exes[level].state_dict(), exes["O0"].state_dict()
        assert got.keys() == ref.keys()
        assert_matches(list(got.values()), list(ref.values()), f"parameters at {level}")
