"""`dlc dump MODEL --kernels` on examples/mlp.py through dlc.cli.main: every kernel's
source with its header (group, ops, the model file's line), and with --all DIR the same
sources as files next to the stages, the module being the one the backend imports."""
import ast
import importlib.util
from pathlib import Path

import numpy as np

import dlc
from dlc import cli
from backends.triton import kernel_sources
from passes.manager import run_pipeline

ROOT = Path(__file__).resolve().parents[3]
MLP_FILE = ROOT / "examples" / "mlp.py"


def mlp_graph():
    """examples/mlp.py's model after the O2 pipeline (the CLI's default level)."""
    dlc.nn.init.manual_seed(0)
    spec = importlib.util.spec_from_file_location("mlp_example_for_kernel_dump", MLP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, specs = module.main_model()
    return run_pipeline(dlc.trace(model, *specs), "O2").graph


def line_of(text: str) -> int:
    return next(k for k, line in enumerate(MLP_FILE.read_text().splitlines(), 1)
                if text in line)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_kernels_prints_every_kernel_with_its_header(capsys):
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--kernels")
    assert status == 0, err
    graph = mlp_graph()
    sources = kernel_sources(graph)
    kernels = [name for name in sources if name != "dlc_helpers"]
    groups = [n.attrs["name"] for n in graph.nodes if n.body is not None]
    assert len(groups) == 3 and set(groups) <= set(kernels)  # three Linear (+ReLU) groups
    assert out.startswith(f"# {len(kernels)} triton kernels of @{graph.name}")
    for name in kernels:
        assert sources[name].rstrip() in out, name
        assert f"# kernel {name} (" in out and f"@triton.jit\ndef {name}(" in out
    assert "# ops: matmul, add, relu" in out
    fc1 = line_of("self.act(self.fc1(images))")
    # the location is the model file's, relative to the working directory when inside it
    assert f"examples/mlp.py:{fc1} (fc1 (Linear))\n" in out
    assert f"examples/mlp.py:{fc1} (act (ReLU))\n" in out
    # kernels only: the long math helpers are named, not printed
    assert "def dlc_erf32(" not in out
    ast.parse(out)  # the listing is valid Python text


def test_kernels_with_all_writes_the_sources_next_to_the_stages(capsys, tmp_path, rng):
    out_dir = tmp_path / "dump"
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--kernels", "--all",
                               str(out_dir))
    assert status == 0, err
    graph = mlp_graph()
    sources = kernel_sources(graph)
    kdir = out_dir / "triton"
    assert sorted(p.name for p in kdir.iterdir()) == sorted(
        [f"{name}.py" for name in sources] + ["module.py"])
    for name, text in sources.items():
        written = (kdir / f"{name}.py").read_text()
        assert written.rstrip() == text.rstrip(), name
        ast.parse(written)
    assert (out_dir / "08-plan_memory.dlc").exists() and (out_dir / "weights.npz").exists()
    assert f"wrote {len(sources) + 1} triton sources" in out
    # module.py is exactly what the backend writes, imports and runs for this graph
    exe = dlc.compile(graph, backend="triton")
    assert (kdir / "module.py").read_text() == Path(exe.source_path).read_text()
    x = rng.standard_normal((64, 784)).astype(np.float32)
    want = dlc.compile(graph)(x)
    np.testing.assert_allclose(exe(x), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_kernels_refuses_stage_and_report_flags(capsys):
    for extra in (["--after", "fuse"], ["--memory"], ["--format", "dot"], ["--llvm"]):
        status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--kernels", *extra)
        assert status == 2 and err.startswith("dlc: error: ") and len(err.splitlines()) == 1
        assert "--kernels" in err, err
