"""`dlc dump MODEL --llvm | --asm`: one listing per kernel, headed by the fused group and
the user's file:line, of the code the llvm backend runs."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import dlc
from dlc import cli, nn
from backends.llvm.dump import kernel_listing

ROOT = Path(__file__).resolve().parents[2]
MLP_FILE = ROOT / "examples" / "mlp.py"
HEADER = re.compile(r"^[;#] ==== kernel (k\d+\.\S+): (\S+) layer (\S+) \(Linear\) at "
                    r"(\S*mlp\.py):(\d+)$", re.M)


def _mlp_kernels() -> list[tuple[str, str]]:
    loaded = cli.load_model(str(MLP_FILE))
    return dlc.compile(loaded.target, *loaded.specs, backend="llvm").kernels()


def test_llvm_listing_heads_every_kernel_with_its_origin(capsys):
    assert cli.main(["dump", str(MLP_FILE), "--llvm"]) == 0
    text = capsys.readouterr().out
    heads = HEADER.findall(text)
    assert [h[0] for h in heads] == [name for name, _ in _mlp_kernels()]
    assert [h[2] for h in heads] == ["fc1", "fc2", "fc3"]
    source = MLP_FILE.read_text().splitlines()
    for name, group, layer, _, line in heads:
        assert f"self.{layer}(" in source[int(line) - 1]  # the user's line of that layer
        assert group.startswith("fused") and "matmul" in group
        assert re.search(rf"define internal \S* ?void @\"?{re.escape(name)}\"?\(", text)
    body = text.split("==== kernel")[1]
    assert "fmul" in body or "fma" in body  # the kernel's arithmetic, not just a header


def test_asm_listing_has_each_kernels_machine_code(capsys, tmp_path):
    out = tmp_path / "mlp.s"
    assert cli.main(["dump", str(MLP_FILE), "--asm", "-o", str(out)]) == 0
    text = out.read_text()
    heads = HEADER.findall(text)
    assert len(heads) == 3
    for name, *_ in heads:
        section = text.split(f"kernel {name}:")[1].split("====")[0]
        assert f"{name}:" in section and re.search(r"^\s+ret", section, re.M)


def test_kernels_with_the_same_loop_nest_share_one_listing(rng):
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    graph = dlc.trace(model, dlc.TensorSpec((4, 8)))
    from passes.manager import run_pipeline
    text = kernel_listing(run_pipeline(graph, "O2").graph, "llvm", threads=1)
    assert text.count("==== kernel") == 2
    assert re.search(r"==== kernel k1\.\S+: .*\n; same code as k0\.", text)
    # the listing is of code that computes the model: compare the backend on it
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    h = np.maximum(x @ w["0.weight"].T + w["0.bias"], 0)
    expected = np.maximum(h @ w["2.weight"].T + w["2.bias"], 0)
    got = dlc.compile(model, dlc.TensorSpec((4, 8)), backend="llvm", threads=1)(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_native_dumps_take_no_stage_flags(capsys):
    assert cli.main(["dump", str(MLP_FILE), "--llvm", "--after", "fuse"]) == 2
    assert "--llvm and --asm print kernels" in capsys.readouterr().err
    assert cli.main(["dump", str(MLP_FILE), "--llvm", "--asm"]) == 2
