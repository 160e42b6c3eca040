"""Checks shared by the compiled backends' model tests: outputs against eager, the user's
own arguments of a graph, and a training step that skips a non-finite loss."""
from __future__ import annotations

import numpy as np

from tests.passes.fusion_models import random_args


def assert_model_close(got, want, scale_tol: float = 1e-5) -> None:
    """Same shapes and dtypes, all finite, ints exact; floats to 1e-5 relative plus 1e-5 of
    the output's largest magnitude (long float32 sums are added in another order)."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.isfinite(w).all() and np.isfinite(g).all()
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
            continue
        atol = scale_tol * max(float(np.abs(w).max()), 1e-30)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=atol)


def user_args(graph, rng) -> list[np.ndarray]:
    """Random arrays for the graph's inputs of role input (params come from the graph)."""
    return [a for a, v in zip(random_args(graph, rng), graph.inputs) if v.role == "input"]


def assert_nan_step_skipped(exe, x: np.ndarray, y: np.ndarray, step: int) -> None:
    """A NaN in the batch gives a NaN loss, the step (the exe's `step`-th call) is recorded
    as skipped, and the state is left as it was."""
    before = exe.state_dict()
    x[0, 0] = np.nan
    assert np.isnan(exe(x, y))
    assert exe.skipped_steps == [step]
    for k, v in exe.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
