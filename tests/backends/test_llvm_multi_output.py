"""Multi-output fused groups on the llvm backend: a pointwise group yielding several values
is one loop storing each (result nodes name the extra buffers), also when an output is a
graph output or overwrites its input in place, and an opaque one runs op by op; results
equal the eager backend's on fresh random inputs."""
import numpy as np
import pytest

import dlc
from backends.eager import run_graph
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType

SHAPE = (37, 130)


def _adam_like_body(dtype: str):
    """(m, v, p, g) -> (p', m', v', g > 0): an optimizer update and a bool mask."""
    t = TensorType(SHAPE, dtype)
    with Builder("bb") as b:
        m, v, p, g = (b.add_input(f"a{i}", t) for i in range(4))
        half = b.emit("full", (), {"shape": (), "value": 0.5, "dtype": dtype})
        m2 = b.emit("add", (b.emit("mul", (m, half), {}), b.emit("mul", (g, half), {})), {})
        v2 = b.emit("add", (b.emit("mul", (v, half), {}),
                            b.emit("mul", (b.emit("mul", (g, g), {}), half), {})), {})
        step = b.emit("div", (m2, b.emit("add", (b.emit("sqrt", (v2,), {}), half), {})), {})
        p2 = b.emit("sub", (p, step), {})
        zero = b.emit("full", (), {"shape": (), "value": 0.0, "dtype": dtype})
        mask = b.emit("gt", (g, zero), {})
    return b.finish([p2, m2, v2, mask])


def _graph(dtype: str, kind: str):
    t = TensorType(SHAPE, dtype)
    with Builder("multi") as b:
        m, v, p, g = (b.add_input(n, t) for n in ("m", "v", "p", "g"))
        g2 = b.emit("mul", (g, g), {})  # a kernel before the group: an arena value
        fused = b.emit("fused", (m, v, p, g2), {"name": "fused0_adam", "kind": kind},
                       body=_adam_like_body(dtype))
        results = [b.emit("result", (fused,), {"index": i}) for i in (1, 2, 3)]
        after = b.emit("add", (results[0], results[1]), {})  # read inside the graph too
    return b.finish([fused, results[1], after, results[2]])


@pytest.mark.parametrize("kind", ["pointwise", "opaque"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multi_output_group_matches_eager(dtype, kind, rng):
    graph = _graph(dtype, kind)
    dlc.verify(graph)
    arrays = [rng.standard_normal(SHAPE).astype(dtype) for _ in range(4)]
    arrays[1] = np.abs(arrays[1])
    want = run_graph(graph, arrays)
    exe = dlc.compile(graph, backend="llvm", threads=2)
    got = exe(*arrays)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype == bool:
            np.testing.assert_array_equal(g, w)
        else:
            assert np.isfinite(g).all()
            np.testing.assert_allclose(g, w, rtol=1e-6 if dtype == "float32" else 1e-13)
    if kind == "pointwise":
        names = [name for name, _ in exe.kernels()]
        assert sum("fused0_adam" in n for n in names) == 1, names
