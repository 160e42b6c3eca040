"""Every example model file: it traces, verifies, prints as text that parses back to the
same text, and the parsed graph computes what the traced one computes."""
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.cli import load_model, trace_model

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.py")
                  if "def main_model" in p.read_text())


def random_inputs(graph, rng):
    out = []
    for v in graph.user_inputs:
        if v.type.dtype.startswith("float"):
            out.append(rng.standard_normal(v.type.shape).astype(v.type.dtype))
        else:
            out.append(rng.integers(0, 2, size=v.type.shape).astype(v.type.dtype))
    return out


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_round_trips_and_runs(path, rng):
    graph = trace_model(load_model(str(path)))
    dlc.verify(graph)
    text = str(graph)
    parsed = dlc.parse(text)
    assert str(parsed) == text
    params = {v.name: v.data for v in graph.inputs if v.role != "input"}
    args = random_inputs(graph, rng)
    want = dlc.compile(graph)(*args)
    got = dlc.compile(parsed, params=params)(*args)
    for w, g in zip(want if isinstance(want, tuple) else [want],
                    got if isinstance(got, tuple) else [got]):
        assert np.isfinite(w).all()
        np.testing.assert_array_equal(g, w)
