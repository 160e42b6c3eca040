"""Readable kernels: kernel_sources (what `dlc dump --kernels` prints) and the generated
module file. Every kernel carries a header naming its group, its ops and the user's
file:line, is named after its fused group, and the module the backend imports is the file
it wrote to the cache dir."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import dlc
import dlc.nn.functional as F
from backends.triton import kernel_sources, module_source
from passes.manager import run_pipeline

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).name


def small_model(x, w):
    h = (x @ w).relu()  # LINE_MATMUL
    return F.softmax(h, dim=-1)  # LINE_SOFTMAX


def line_of(tag: str) -> int:
    return next(k for k, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if text.endswith(tag) and "LINE_" in text and "def " not in text)


def fused_graph():
    graph = dlc.trace(small_model, dlc.TensorSpec((8, 16)), dlc.TensorSpec((16, 12)))
    return run_pipeline(graph, "O2").graph


def test_every_kernel_has_a_header_and_its_groups_name():
    graph = fused_graph()
    sources = kernel_sources(graph)
    names = list(sources)
    assert names[0] == "dlc_helpers" and "def dlc_erf32(" in sources["dlc_helpers"]
    groups = [n.attrs["name"] for n in graph.nodes if n.body is not None]
    assert groups and set(groups) <= set(names[1:])
    for name in names[1:]:
        text = sources[name]
        head = text.splitlines()[0]
        assert head.startswith(f"# kernel {name} (") and " of group " in head
        assert "\n# ops: " in text and f"@triton.jit\ndef {name}(" in text
    everything = "\n".join(sources.values())
    assert f"{HERE}:{line_of('LINE_MATMUL')}" in everything
    assert f"{HERE}:{line_of('LINE_SOFTMAX')}" in everything
    softmax = next(t for n, t in sources.items() if "max" in t.split("# ops: ")[-1][:60])
    assert "(reduction)" in softmax


def test_the_module_the_backend_imports_is_the_file_it_wrote(rng):
    graph = fused_graph()
    exe = dlc.compile(graph, backend="triton")
    path = Path(exe.source_path)
    assert path.parent == Path(os.environ["DLC_CACHE_DIR"]) / "triton"
    text = path.read_text()
    assert text == exe.program.module_source() == module_source(graph, interpret=True)
    for name, source in exe.kernel_sources().items():
        assert source in text, name
    module = sys.modules[path.stem]
    assert module.__file__ == str(path)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    w = rng.standard_normal((16, 12)).astype(np.float32)
    want = dlc.compile(graph)(x, w)
    np.testing.assert_allclose(exe(x, w), want, rtol=1e-5, atol=1e-6)
    # the same graph again: the same file, not a second copy
    assert dlc.compile(graph, backend="triton").source_path == str(path)


def test_sources_need_neither_torch_nor_triton():
    code = ("import sys, dlc\n"
            "from backends.triton import kernel_sources\n"
            "g = dlc.trace(lambda x: (x * 2).exp().sum(), dlc.TensorSpec((4, 5)))\n"
            "s = kernel_sources(g, interpret=False)\n"
            "print(len(s), 'torch' in sys.modules, 'triton' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    count, torch_loaded, triton_loaded = run.stdout.split()
    assert int(count) >= 2 and torch_loaded == "False" and triton_loaded == "False"


def test_gpu_sources_are_autotuned_and_interpreter_sources_are_not():
    graph = fused_graph()
    gpu = "\n".join(kernel_sources(graph, interpret=False).values())
    interp = "\n".join(kernel_sources(graph, interpret=True).values())
    assert "@triton.autotune(" in gpu and "@triton.autotune(" not in interp
