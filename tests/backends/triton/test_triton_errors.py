"""Bad input on the triton backend: a kernel that fails shows its generated source and
Triton's message; an arena larger than the device's free memory is refused with the bytes
needed; out-of-range indices are reported (in a subprocess, since a kernel that indexes
out of bounds could corrupt the test process's memory); wrong arguments and options are
named."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from backends import registry
from backends.registry import compile_graph
from backends.triton import memory
from backends.triton.codegen import lowering
from backends.triton.codegen.lower_elementwise import elementwise
from backends.triton.launcher import KernelError
from dlc.errors import ArgumentError, DlcError
from dlc.ir.builder import Builder
from dlc.ir.types import TensorType

ROOT = Path(__file__).resolve().parents[3]


def one_op(op: str, types: list[tuple], **attrs):
    with Builder(op) as b:
        ins = [b.add_input(f"a{k}", TensorType(*t)) for k, t in enumerate(types)]
        out = b.emit(op, tuple(ins), attrs)
    return b.finish([out])


def test_failing_kernel_names_its_source_and_the_triton_message(monkeypatch, rng):
    monkeypatch.setitem(lowering.LOWERING, "exp",
                        elementwise(lambda node, a: f"tl.no_such_function({a})"))
    exe = compile_graph(one_op("exp", [((3, 4), "float32")]), "triton")
    with pytest.raises(KernelError) as info:
        exe(rng.standard_normal((3, 4)).astype(np.float32))
    message = str(info.value)
    path, line = message.rsplit("generated source: ", 1)[1].rsplit(":", 1)
    assert os.path.isfile(path) and path == exe.source_path
    assert "no_such_function" in message and "exp_0" in message
    assert open(path).read().splitlines()[int(line) - 1].startswith("def exp_0(")


def test_arena_too_large_for_the_device(monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda device: 1000)
    with Builder("two") as b:  # two 64x64 float32 intermediates alive at once
        x = b.add_input("x", TensorType((64, 64), "float32"))
        h = b.emit("relu", (b.emit("matmul", (x, x), {}),), {})
        out = b.emit("exp", (h,), {})
    with pytest.raises(memory.DeviceMemoryError) as info:
        compile_graph(b.finish([out]), "triton")
    message = str(info.value)
    needed = int(re.search(r"needs (\d+) bytes", message).group(1))
    assert needed == 2 * 64 * 64 * 4
    assert "only 1000 bytes" in message and "on cpu" in message
    assert isinstance(info.value, DlcError)


OUT_OF_RANGE = textwrap.dedent("""
    import os
    os.environ["TRITON_INTERPRET"] = "1"
    import numpy as np
    from backends.registry import compile_graph
    from dlc.errors import DlcError
    from dlc.ir.builder import Builder
    from dlc.ir.types import TensorType

    def graph(op, types, **attrs):
        with Builder(op) as b:
            ins = [b.add_input(f"a{k}", TensorType(*t)) for k, t in enumerate(types)]
            out = b.emit(op, tuple(ins), attrs)
        return b.finish([out])

    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    take = compile_graph(graph("take", [((4, 5), "float32"), ((3,), "int64")], axis=0),
                         "triton")
    print("negative ok", take(x, np.array([-4, 3, -1]))[:, 0].tolist())
    for op, exe, args in [
            ("take", take, (x, np.array([0, 7, 1]))),
            ("gather", compile_graph(graph("gather", [((4, 5), "float32"),
                                                      ((4, 2), "int64")], axis=1), "triton"),
             (x, np.array([[0, 1], [2, -6], [0, 0], [1, 1]]))),
            ("scatter_add", compile_graph(graph("scatter_add", [((4, 5), "float32"),
                                                                ((2, 5), "int32"),
                                                                ((2, 5), "float32")], axis=0),
                                          "triton"),
             (x, np.full((2, 5), 9, np.int32), np.ones((2, 5), np.float32)))]:
        try:
            exe(*args)
            print(op, "no error")
        except DlcError as e:
            print(op, "error:", e)
    print("after the error", take(x, np.array([1, 1, 1]))[:, 0].tolist())
""")


def test_out_of_range_indices_raise(tmp_path):
    env = {**os.environ, "DLC_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", OUT_OF_RANGE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "negative ok [0.0, 15.0, 15.0]" in out
    assert "take error: take at " in out
    assert "index 7 is out of range for axis 0 of size 4 (valid: -4..3)" in out
    assert "gather error:" in out and "index -6 is out of range for axis 1 of size 5" in out
    assert "scatter_add error:" in out and "index 9 is out of range for axis 0 of size 4" in out
    assert "after the error [5.0, 5.0, 5.0]" in out


def test_wrong_arguments_are_named(rng):
    exe = compile_graph(one_op("add", [((3, 4), "float32"), ((4,), "float32")]), "triton")
    a, b = np.zeros((3, 4), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ArgumentError, match="expected 2 input"):
        exe(a)
    with pytest.raises(ArgumentError, match=r"shape \(4, 3\)"):
        exe(np.zeros((4, 3), np.float32), b)
    with pytest.raises(ArgumentError, match="float64"):
        exe(a, np.zeros(4, np.float64))
    with pytest.raises(ArgumentError, match="torch int64"):
        exe(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(4))


@pytest.mark.parametrize("options,match", [
    ({"block": 3}, "unknown option"),
    ({"mixed_precision": "float8"}, "mixed_precision"),
    ({"interpret": True, "device": "cuda"}, "interpreter runs on torch CPU"),
    ({"max_tile": 100}, "power of two"),
])
def test_bad_options_are_named(options, match):
    with pytest.raises(ArgumentError, match=match):
        compile_graph(one_op("exp", [((2,), "float32")]), "triton", **options)


def test_the_registry_lists_triton():
    assert "triton" in registry.BACKENDS
    with pytest.raises(DlcError, match="triton"):
        compile_graph(one_op("exp", [((2,), "float32")]), "no-such-backend")


def test_importing_dlc_imports_neither_torch_nor_triton():
    code = "import sys, dlc, backends.registry; print('torch' in sys.modules, " \
           "'triton' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.stdout.strip() == "False False", run.stderr[-2000:]


MODES = textwrap.dedent("""
    import sys
    if sys.argv[1] == "imported-for-compiling":
        import triton  # noqa: F401  (before TRITON_INTERPRET is set)
    import numpy as np
    import dlc
    from dlc.errors import DlcError
    g = dlc.trace(lambda x: (x * 2.0).exp(), dlc.TensorSpec((3,)))
    try:
        out = dlc.compile(g, backend="triton", interpret=True)(np.zeros(3, np.float32))
        print("ran", out.tolist())
    except DlcError as e:
        print("error:", e)
""")


@pytest.mark.parametrize("mode", ["fresh", "imported-for-compiling"])
def test_interpreting_in_a_process_without_the_variable(mode, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(ROOT), DLC_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", MODES, mode], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    if mode == "fresh":  # the backend sets TRITON_INTERPRET before it imports triton
        assert run.stdout.strip() == "ran [1.0, 1.0, 1.0]"
    else:
        assert "error: triton: interpret=True, but this process imported triton" in run.stdout
        assert "set TRITON_INTERPRET=1 before anything imports triton" in run.stdout
