"""Ahead-of-time bundles: a C program (tests/c/run_bundle.c, built with cc against the
generated header, no Python) runs examples/mlp.py's inference and a training step, and
its outputs equal the eager backend's (float32 to 1e-5 relative); `dlc.load(DIR)` runs a
bundle as an Executable and refuses damaged ones naming the file; bad --target-cpu names
list the valid ones."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
import frontend.functional as F
from dlc import cli, nn
from dlc.errors import ArgumentError, DlcError
from backends.executable import NonFiniteLossError
from backends.llvm import aot
from backends.llvm.bundle import BundleLoadError
from backends.llvm.jit import host_cpu

ROOT = Path(__file__).resolve().parents[2]
MLP_FILE = ROOT / "examples" / "mlp.py"
RUNNER = ROOT / "tests" / "c" / "run_bundle.c"
RTOL, ATOL = 1e-5, 1e-6
BATCH, FEATURES, CLASSES = 6, 12, 5


# -- building and running the C program ---------------------------------------------------
def build_runner(bundle: Path, name: str, out: Path, link: str) -> Path:
    """cc the runner against NAME.h, linked with libNAME.so or with NAME.o itself."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    exe = out / f"run_{name}_{link}"
    cmd = [aot.c_compiler(), "-std=c11", "-O1", "-Wall", "-Wextra", "-pedantic", "-Werror",
           f"-I{bundle}", f"-DBUNDLE={name}", f"-DBUNDLE_UPPER={name.upper()}",
           f'-DBUNDLE_HEADER="{name}.h"', str(RUNNER), "-o", str(exe)]
    if link == "shared":
        cmd += [f"-L{bundle}", f"-l{name}", f"-Wl,-rpath,{bundle}"]
    else:
        cmd += [str(bundle / f"{name}.o"), "-lm"] + (["-lgomp"] if manifest["openmp"] else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return exe


def run_c(runner: Path, bundle: Path, out: Path, steps: int, inputs: list) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, a in enumerate(inputs):
        files.append(out / f"input{i}.bin")
        np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tofile(files[-1])
    done = subprocess.run([str(runner), str(bundle), str(out), str(steps), *map(str, files)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


def read_output(out: Path, desc: dict, j: int) -> np.ndarray:
    return np.fromfile(out / f"output{j}.bin", dtype=desc["dtype"]).reshape(desc["shape"])


def read_weights(block: bytes, manifest: dict) -> dict[str, np.ndarray]:
    """Every param/state array of a weights block, by the manifest's offsets."""
    out = {}
    for p in manifest["params"]:
        raw = block[p["offset"]:p["offset"] + p["bytes"]]
        out[p["name"]] = np.frombuffer(raw, dtype=np.dtype(p["dtype"]).newbyteorder("<")) \
            .reshape(p["shape"])
    return out


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert not np.isnan(actual).any()
    if actual.dtype.kind in "iub":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


# -- the bundles -----------------------------------------------------------------------------
def torch_mlp(model, x: np.ndarray) -> np.ndarray:
    w = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    h = torch.from_numpy(x)
    for i, layer in enumerate(("fc1", "fc2", "fc3")):
        h = torch.nn.functional.linear(h, w[f"{layer}.weight"], w[f"{layer}.bias"])
        h = torch.relu(h) if i < 2 else h
    return h.numpy()


@pytest.fixture(scope="module")
def mlp_bundle(tmp_path_factory) -> Path:
    """`dlc compile examples/mlp.py -o DIR` (weights drawn with the CLI's --seed 0)."""
    out = tmp_path_factory.mktemp("mlp") / "bundle"
    assert cli.main(["compile", str(MLP_FILE), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def mlp_model():
    loaded = cli.load_model(str(MLP_FILE), seed=0)
    return loaded.target, loaded.specs


def train_graph(seed: int = 0):
    nn.init.manual_seed(seed)
    model = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    return dlc.train_step(model, F.cross_entropy, dlc.optim.Adam(lr=1e-2),
                          dlc.TensorSpec((BATCH, FEATURES), name="x"),
                          dlc.TensorSpec((BATCH,), "int64", name="target"))


@pytest.fixture(scope="module", params=[False, True], ids=["weights-file", "embedded"])
def train_bundle(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "bundle"
    aot.compile_bundle(train_graph(), directory=out, name="train",
                       embed_weights=request.param)
    return out


def batch(rng) -> tuple[np.ndarray, np.ndarray]:
    return (rng.standard_normal((BATCH, FEATURES)).astype(np.float32),
            rng.integers(0, CLASSES, BATCH))


# -- C programs ------------------------------------------------------------------------------
def test_bundle_files_and_manifest(mlp_bundle):
    manifest = json.loads((mlp_bundle / "manifest.json").read_text())
    assert sorted(p.name for p in mlp_bundle.iterdir()) == sorted(
        ["manifest.json", "mlp.o", "libmlp.so", "mlp.h", "mlp.weights", "mlp.dlc"])
    assert manifest["dlc_version"] == dlc.__version__
    assert manifest["inputs"][0]["shape"] == [64, 784] and manifest["inputs"][0]["dtype"] \
        == "float32"
    assert manifest["outputs"][0]["shape"] == [64, 10]
    assert set(manifest["files"]) == {"object", "library", "header", "weights", "graph"}
    header = (mlp_bundle / "mlp.h").read_text()
    for text in ("int32_t mlp_run(", "#define MLP_ARENA_BYTES", "#define MLP_INPUT0_SIZE 50176",
                 "#define MLP_OUTPUT0_BYTES 2560", "const char *mlp_error_string(",
                 f"#define MLP_ARENA_BYTES {manifest['arena']['bytes']}"):
        assert text in header


def test_c_program_runs_mlp_inference(mlp_bundle, mlp_model, tmp_path, rng):
    model, specs = mlp_model
    manifest = json.loads((mlp_bundle / "manifest.json").read_text())
    x = rng.random((64, 784), dtype=np.float32)
    runner = build_runner(mlp_bundle, "mlp", tmp_path, "shared")
    out = run_c(runner, mlp_bundle, tmp_path / "out", 1, [x])
    logits = read_output(out, manifest["outputs"][0], 0)
    close(logits, dlc.compile(model, *specs, backend="eager")(x))
    close(logits, torch_mlp(model, x))


def test_c_program_runs_a_training_step(train_bundle, tmp_path, rng):
    manifest = json.loads((train_bundle / "manifest.json").read_text())
    x, y = batch(rng)
    link = "shared" if manifest["weights"]["embedded"] else "object"
    runner = build_runner(train_bundle, "train", tmp_path, link)
    out = run_c(runner, train_bundle, tmp_path / "out", 1, [x, y])
    eager = dlc.compile(train_graph(), backend="eager")
    loss = eager(x, y)
    close(read_output(out, manifest["outputs"][0], 0), loss)
    updated = read_weights((out / "weights.bin").read_bytes(), manifest)
    assert updated["optim.step"] == 1
    for name, value in eager.state.items():  # parameters and Adam's moments after the step
        close(updated[name], value)


# -- dlc.load --------------------------------------------------------------------------------
def test_load_runs_like_eager(mlp_bundle, mlp_model, rng):
    model, specs = mlp_model
    exe = dlc.load(mlp_bundle)
    x = rng.random((64, 784), dtype=np.float32)
    close(exe(x), dlc.compile(model, *specs, backend="eager")(x))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(exe.state_dict()[k], v)
    with pytest.raises(ArgumentError, match=r"shape \(64, 784\)"):
        exe(np.zeros((63, 784), np.float32))


def test_loaded_training_step_updates_in_place(train_bundle, rng):
    exe = dlc.load(train_bundle)
    eager = dlc.compile(train_graph(), backend="eager")
    for _ in range(2):
        x, y = batch(rng)
        close(exe(x, y), eager(x, y))
    for name, value in eager.state.items():
        close(exe.state[name], value)
    # replaced state goes back into the weights block before the next step
    fresh = {k: v * 0.5 for k, v in eager.state_dict().items()}
    exe.load_state_dict(fresh)
    eager.load_state_dict(fresh)
    x, y = batch(rng)
    close(exe(x, y), eager(x, y))
    for name, value in eager.state_dict().items():
        close(exe.state_dict()[name], value)


def test_nonfinite_loss_leaves_the_weights_alone(train_bundle, rng):
    exe = dlc.load(train_bundle)
    before = exe.weights.copy()
    x, y = batch(rng)
    x[0, 0] = np.nan
    with pytest.raises(NonFiniteLossError, match="step 1"):
        exe(x, y)
    np.testing.assert_array_equal(exe.weights, before)


def test_index_error_names_the_layer(tmp_path, rng):
    nn.init.manual_seed(0)
    emb = nn.Embedding(10, 4)
    aot.compile_bundle(emb, dlc.TensorSpec((3,), "int64"), directory=tmp_path, name="emb")
    exe = dlc.load(tmp_path)
    ids = rng.integers(0, 10, 3)
    close(exe(ids), emb.state_dict()["weight"][ids])
    with pytest.raises(DlcError, match=r"Embedding at .*test_llvm_aot.py:\d+: index 12 is "
                                       r"out of range for axis 0 of size 10"):
        exe(np.array([1, 12, 3]))


def test_threaded_bundle_links_openmp(tmp_path, rng):
    def shifted_relu(x):
        return F.relu(x * 2.0 + 1.0)

    aot.compile_bundle(shifted_relu, dlc.TensorSpec((256, 1024)), directory=tmp_path,
                       name="ew", threads=2)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["openmp"] and "-lgomp" in (tmp_path / "ew.h").read_text()
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    close(dlc.load(tmp_path)(x), torch.relu(torch.from_numpy(x) * 2 + 1).numpy())


def test_convolution_bundle_carries_its_tables(tmp_path, rng):
    """Row and window convolutions read per-tap tables made at lowering time: the bundle's
    object holds them (no Python at run time) and its results equal torch's."""
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 5, padding=2), nn.ReLU(),
                          nn.Conv2d(6, 4, 3, stride=2, padding=1))
    aot.compile_bundle(model, dlc.TensorSpec((3, 2, 20, 20)), directory=tmp_path, name="cnn")
    x = rng.standard_normal((3, 2, 20, 20)).astype(np.float32)
    sd = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    h = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), sd["0.weight"],
                                              sd["0.bias"], padding=2))
    want = torch.nn.functional.conv2d(h, sd["2.weight"], sd["2.bias"], stride=2, padding=1)
    close(dlc.load(tmp_path)(x), want.numpy())


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-64])


def _old_version(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["dlc_version"] = "0.0.1"
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("file,damage,message", [
    ("libmlp.so", _flip, r"libmlp\.so: corrupted"),
    ("mlp.o", _flip, r"mlp\.o: corrupted"),
    ("mlp.weights", _cut, r"mlp\.weights: truncated"),
    ("mlp.dlc", _flip, r"mlp\.dlc: corrupted"),
    ("manifest.json", _old_version, r"manifest\.json: the bundle was made by dlc 0\.0\.1"),
    ("manifest.json", _cut, r"manifest\.json: unreadable or corrupted"),
    ("mlp.weights", Path.unlink, r"mlp\.weights: missing"),
])
def test_load_refuses_damaged_bundles(mlp_bundle, tmp_path, file, damage, message):
    bundle = _copy(mlp_bundle, tmp_path)
    damage(bundle / file)
    with pytest.raises(BundleLoadError, match=message):
        dlc.load(bundle)


def test_load_refuses_a_folder_without_a_bundle(tmp_path):
    with pytest.raises(BundleLoadError, match="manifest.json: missing"):
        dlc.load(tmp_path)


# -- the command line --------------------------------------------------------------------------
def test_unknown_target_cpu_lists_the_valid_ones(tmp_path, capsys):
    assert cli.main(["compile", str(MLP_FILE), "-o", str(tmp_path), "--target-cpu",
                     "pentium-9000"]) == 2
    err = capsys.readouterr().err
    assert "unknown target CPU 'pentium-9000'" in err
    assert "x86-64" in err and host_cpu()[0] in err and "skylake-avx512" in err
    assert not any(tmp_path.iterdir())


def test_generic_x86_64_target(tmp_path, rng):
    model_file = tmp_path / "tiny.py"
    model_file.write_text(
        "import dlc\nfrom dlc import nn\n\n"
        "def main_model():\n"
        "    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh())\n"
        "    return model, [dlc.TensorSpec((3, 8))]\n")
    out = tmp_path / "bundle"
    assert cli.main(["compile", str(model_file), "-o", str(out), "--target-cpu", "x86-64",
                     "--embed-weights", "--threads", "1", "--seed", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["cpu"] == "x86-64" and manifest["weights"]["embedded"]
    assert not (out / "tiny.weights").exists()
    loaded = cli.load_model(str(model_file), seed=3)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    w = {k: torch.from_numpy(v) for k, v in loaded.target.state_dict().items()}
    expected = torch.tanh(torch.nn.functional.linear(torch.from_numpy(x), w["0.weight"],
                                                     w["0.bias"])).numpy()
    close(dlc.load(out)(x), expected)


def test_bundle_flags_need_an_output_folder(capsys):
    assert cli.main(["compile", str(MLP_FILE), "--embed-weights"]) == 2
    assert "only apply to bundles: add -o DIR" in capsys.readouterr().err


def test_exp_for_another_cpu(tmp_path, rng):
    """exp (softmax, sigmoid) compiles for a CPU without AVX-512 (no host-only
    instructions in the bundle) and its library agrees with torch here."""
    model_file = tmp_path / "soft.py"
    model_file.write_text(
        "import dlc\nfrom dlc import nn\n\n"
        "def soft(x):\n"
        "    return nn.functional.softmax(x, dim=-1) + nn.functional.sigmoid(x)\n\n"
        "def main_model():\n"
        "    return soft, [dlc.TensorSpec((5, 70))]\n")
    out = tmp_path / "bundle"
    assert cli.main(["compile", str(model_file), "-o", str(out), "--target-cpu",
                     "haswell", "--threads", "1"]) == 0
    x = rng.standard_normal((5, 70)).astype(np.float32) * 20
    x[0, :3] = [-np.inf, 95.0, -95.0]  # exp past its range on both sides
    t = torch.from_numpy(x)
    close(dlc.load(out)(x), (torch.softmax(t, -1) + torch.sigmoid(t)).numpy())
