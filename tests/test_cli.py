"""The `dlc` command line: dump, run and demo on examples/mlp.py, and its one-line errors."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
from dlc import cli
from tests.ops.harness import TOL, assert_allclose

ROOT = Path(__file__).resolve().parent.parent
MLP_FILE = ROOT / "examples" / "mlp.py"


def load_example(seed: int = 0):
    """examples/mlp.py's main_model(), with the weights the CLI draws for `--seed seed`."""
    dlc.nn.init.manual_seed(seed)
    spec = importlib.util.spec_from_file_location("mlp_example_for_tests", MLP_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main_model()


def torch_mlp(model, x: np.ndarray) -> np.ndarray:
    """The oracle: the same MLP written with torch.nn.functional on the model's weights."""
    w = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    h = torch.from_numpy(x)
    h = torch.relu(torch.nn.functional.linear(h, w["fc1.weight"], w["fc1.bias"]))
    h = torch.relu(torch.nn.functional.linear(h, w["fc2.weight"], w["fc2.bias"]))
    return torch.nn.functional.linear(h, w["fc3.weight"], w["fc3.bias"]).numpy()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, expected_status: int, *fragments: str):
    assert status == expected_status, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dlc: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- help -------------------------------------------------------------------------------------
def test_python_m_dlc_help_in_a_subprocess():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "dlc", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: dlc")
    for name in ("dump", "run", "demo"):
        assert name in proc.stdout


@pytest.mark.parametrize("command", ["dump", "run", "demo"])
def test_every_subcommand_has_help_documenting_the_model_convention(capsys, command):
    status, out, _ = run_cli(capsys, command, "--help")
    assert status == 0
    assert f"usage: dlc {command}" in out
    assert "example_inputs()" in out and "main_model()" in out


def test_no_subcommand_prints_help_and_fails(capsys):
    status, out, _ = run_cli(capsys)
    assert status == 2
    assert "usage: dlc" in out


def test_unknown_subcommand_is_one_line(capsys):
    status, _, err = run_cli(capsys, "frobnicate")
    assert_one_line_error(status, err, 2, "frobnicate")


# -- dump -------------------------------------------------------------------------------------
def test_dump_text_is_the_traced_graph(capsys):
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE))
    assert status == 0, err
    model, specs = load_example()
    assert out == str(dlc.trace(model, *specs)) + "\n"
    assert str(dlc.parse(out)) + "\n" == out  # the dump reads back as the same graph


def test_dump_names_a_class_and_writes_a_file(capsys, tmp_path):
    target = tmp_path / "mlp.dlc"
    status, out, err = run_cli(capsys, "dump", f"{MLP_FILE}:MLP", "-o", str(target))
    assert status == 0, err
    assert out == ""
    graph = dlc.parse(target.read_text())
    assert [v.type.shape for v in graph.user_inputs] == [(64, 784)]
    assert graph.outputs[0].type == dlc.TensorType((64, 10), "float32")


def test_dump_dot(capsys, tmp_path):
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--format", "dot")
    assert status == 0, err
    assert out.lstrip().startswith("digraph")
    assert "matmul" in out and "fc1.weight" in out
    target = tmp_path / "mlp.dot"
    assert run_cli(capsys, "dump", str(MLP_FILE), "--format=dot", "-o", str(target))[0] == 0
    assert target.read_text() == out


# -- run --------------------------------------------------------------------------------------
def test_run_matches_dlc_compile_and_torch(capsys, tmp_path, rng):
    x = rng.random((64, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    status, out, err = run_cli(capsys, "run", str(MLP_FILE), "--input", str(tmp_path / "x.npy"),
                               "-o", str(tmp_path / "y.npy"))
    assert status == 0, err
    assert "output 0: f32[64,10]" in out
    got = np.load(tmp_path / "y.npy")

    model, specs = load_example()
    direct = dlc.compile(model, *specs)(x)
    np.testing.assert_array_equal(got, direct)  # same graph, same backend: same bits
    rtol, atol = TOL["float32"]
    assert_allclose(got, torch_mlp(model, x), rtol=rtol, atol=atol)


MULTI_MODEL = """
import dlc

def two_outputs(a, b):
    return a * b, a - b

def main_model():
    return two_outputs, [dlc.TensorSpec((3, 5)), dlc.TensorSpec((3, 5))]
"""


def test_run_a_function_with_two_inputs_and_two_outputs(capsys, tmp_path, rng):
    (tmp_path / "multi.py").write_text(MULTI_MODEL)
    a, b = (rng.standard_normal((3, 5)).astype(np.float32) for _ in range(2))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    status, out, err = run_cli(capsys, "run", str(tmp_path / "multi.py"),
                               "-i", str(tmp_path / "a.npy"), "-i", str(tmp_path / "b.npy"),
                               "-o", str(tmp_path / "out.npz"))
    assert status == 0, err
    assert "output 1: f32[3,5]" in out
    saved = np.load(tmp_path / "out.npz")
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rtol, atol = TOL["float32"]
    assert_allclose(saved["output0"], (ta * tb).numpy(), rtol=rtol, atol=atol)
    assert_allclose(saved["output1"], (ta - tb).numpy(), rtol=rtol, atol=atol)


# -- demo -------------------------------------------------------------------------------------
def _printed_sum(out: str) -> float:
    line = next(l for l in out.splitlines() if l.startswith("output 0:"))
    return float(line.split("sum=")[1].split()[0])


def test_demo_prints_the_ir_and_the_right_numbers(capsys):
    status, out, err = run_cli(capsys, "demo")
    assert status == 0, err
    assert "graph @MLP(" in out and "matmul" in out
    assert "output 0: f32[64,10]" in out
    assert "trace " in out and " ms" in out
    # the demo's batch: --seed 0 drives both the weights and the random images
    model, specs = load_example(seed=0)
    x = np.random.default_rng(0).random(specs[0].shape).astype(np.float32)
    expected = float(torch_mlp(model, x).astype(np.float64).sum())
    # a sum over 640 float32 logits: each may differ by atol, so the sum by up to 640 atol
    assert abs(_printed_sum(out) - expected) <= 640 * TOL["float32"][1] + 1e-8 * abs(expected)


def test_demo_quiet_skips_the_ir(capsys):
    status, out, err = run_cli(capsys, "demo", "--quiet")
    assert status == 0, err
    assert "graph @" not in out and "output 0:" in out


# -- errors: one line, no traceback ----------------------------------------------------------
BAD_MODELS = """
import dlc
from dlc import nn

class Narrow(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 3)

    def forward(self, x):
        return self.fc(x)  # NARROW

    @staticmethod
    def example_inputs():
        return [dlc.TensorSpec((2, 4))]

class Broken(nn.Module):
    def forward(self, x):
        return x.no_such_method()  # BROKEN

    def example_inputs(self):
        return [dlc.TensorSpec((2, 4))]

class NoSpecs(nn.Module):
    def forward(self, x):
        return x
"""


def line_of(marker: str) -> int:
    """The line of BAD_MODELS (as written to the file) that carries `# marker`."""
    lines = textwrap.dedent(BAD_MODELS).splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))


@pytest.fixture
def bad_models(tmp_path) -> Path:
    path = tmp_path / "bad_models.py"
    path.write_text(textwrap.dedent(BAD_MODELS))
    return path


def test_missing_file(capsys, tmp_path):
    status, _, err = run_cli(capsys, "dump", str(tmp_path / "nowhere.py"))
    assert_one_line_error(status, err, 2, "nowhere.py", "does not exist")


def test_missing_name(capsys):
    status, _, err = run_cli(capsys, "dump", f"{MLP_FILE}:NoSuchModel")
    assert_one_line_error(status, err, 2, "'NoSuchModel'", "MLP", "main_model")


def test_missing_default_factory(capsys, bad_models):
    status, _, err = run_cli(capsys, "dump", str(bad_models))
    assert_one_line_error(status, err, 2, "main_model", "Narrow")


def test_module_without_example_inputs(capsys, bad_models):
    status, _, err = run_cli(capsys, "dump", f"{bad_models}:NoSpecs")
    assert_one_line_error(status, err, 2, "NoSpecs", "example_inputs()")


def test_shape_error_in_the_model_names_the_users_line(capsys, bad_models):
    status, _, err = run_cli(capsys, "dump", f"{bad_models}:Narrow")
    assert_one_line_error(status, err, 1, f"bad_models.py:{line_of('NARROW')}", "(2, 4)")


def test_python_error_in_the_model_names_the_users_line(capsys, bad_models):
    status, _, err = run_cli(capsys, "dump", f"{bad_models}:Broken")
    assert_one_line_error(status, err, 1, f"bad_models.py:{line_of('BROKEN')}",
                          "AttributeError", "no_such_method")


def test_debug_shows_the_exception(bad_models):
    with pytest.raises(dlc.ShapeError):
        cli.main(["dump", f"{bad_models}:Narrow", "--debug"])
    with pytest.raises(dlc.ShapeError):
        cli.main(["--debug", "dump", f"{bad_models}:Narrow"])


@pytest.mark.parametrize("shape, dtype, fragments", [
    ((64, 783), np.float32, ["'images'", "f32[64,784]", "(64, 783)"]),
    ((64, 784), np.float64, ["'images'", "float64", "astype(np.float32)"]),
])
def test_wrong_input_array(capsys, tmp_path, rng, shape, dtype, fragments):
    path = tmp_path / "x.npy"
    np.save(path, rng.random(shape).astype(dtype))
    status, _, err = run_cli(capsys, "run", str(MLP_FILE), "--input", str(path))
    assert_one_line_error(status, err, 2, str(path), *fragments)


def test_wrong_number_of_inputs(capsys):
    status, _, err = run_cli(capsys, "run", str(MLP_FILE))
    assert_one_line_error(status, err, 2, "takes 1 input", "got 0")


@pytest.mark.parametrize("content, fragment", [
    (b"not an array\n", "not a .npy file"),
    (b"\x93NUMPY\x01\x00", "not a readable .npy"),
])
def test_bad_npy(capsys, tmp_path, content, fragment):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    status, _, err = run_cli(capsys, "run", str(MLP_FILE), "--input", str(path))
    assert_one_line_error(status, err, 2, fragment)


def test_missing_npy(capsys, tmp_path):
    status, _, err = run_cli(capsys, "run", str(MLP_FILE), "-i", str(tmp_path / "no.npy"))
    assert_one_line_error(status, err, 2, "no.npy", "no such file")


def test_commands_come_from_one_table():
    cli._load_command_modules()  # dump lives in dlc/cli_dump.py, loaded by main()
    assert {"dump", "run", "demo"} <= set(cli.COMMANDS)
    with pytest.raises(ValueError):
        cli.register("dump", "again", lambda p: None)(lambda args: 0)


TWO_CHAINS_MODEL = """
import dlc

def two_chains(a, b):
    return (a * 2.0).relu(), (b * 3.0).tanh()

def main_model():
    return two_chains, [dlc.TensorSpec((8, 8)), dlc.TensorSpec((8, 8))]
"""


def test_dump_fuses_for_the_backend_named(capsys, tmp_path):
    """Two small independent chains: one kernel for triton (a launch costs), two for llvm."""
    (tmp_path / "chains.py").write_text(TWO_CHAINS_MODEL)
    reports = {}
    for backend in ("llvm", "triton"):
        status, out, err = run_cli(capsys, "dump", str(tmp_path / "chains.py"),
                                   "--explain-fusion", "--for-backend", backend)
        assert status == 0, err
        reports[backend] = out
    assert "horizontal" not in reports["llvm"].split("fusion of", 1)[1]
    assert "both small (64 elements)" in reports["triton"]
