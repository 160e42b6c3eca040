"""The CPU-side parts of backends/triton/gpu_bench.py (the timing itself needs a GPU):
every workload builds, fuses as the targets assume, and matches torch at small sizes; the
verdicts and the table; and without a GPU the script says so instead of failing."""
import pytest
import torch

from backends.triton import gpu_bench
from dlc.errors import DlcError

SMALL = 1 / 256


@pytest.mark.parametrize("w", gpu_bench.workloads(SMALL), ids=lambda w: w.name)
def test_workload_matches_torch_at_small_size(w):
    torch.manual_seed(0)
    inputs = w.make_inputs(torch, "cpu")
    exe = gpu_bench.build(w)
    got, want = exe(*inputs), w.torch_fn(*inputs)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert gpu_bench._rel_error(got, want) <= w.tolerance
    if w.name in ("ew_chain", "softmax", "layernorm", "gemm_fp16"):
        assert len(exe.program.kernels) == 1, [k.name for k in exe.program.kernels]


def test_full_sizes_are_the_ones_the_issue_names():
    sizes = {w.name: w for w in gpu_bench.workloads()}
    assert sizes["ew_chain"].specs[0].shape == (16 * 2 ** 20,)
    assert sizes["softmax"].specs[0].shape == (4096, 1024)
    assert sizes["layernorm"].specs[0].shape == (8192, 1024)
    assert sizes["gemm_fp16"].flops == sizes["gemm_bf16"].flops == 2 * 4096 ** 3
    assert sizes["gemm_bf16"].options == {"mixed_precision": "bfloat16"}


def test_verdicts():
    ws = {w.name: w for w in gpu_bench.workloads(SMALL)}
    ew = ws["ew_chain"]
    copy_gbs = ew.bytes_moved / 1e-3 / 1e9          # a copy as fast as 1 ms
    rate, result = gpu_bench.verdict(ew, {"dlc": 1.1, "eager": 3.0, "compiled": 1.0},
                                     copy_gbs)
    assert result == "ok (91% of copy)" and rate.endswith("GB/s")
    _, result = gpu_bench.verdict(ew, {"dlc": 1.3, "eager": 3.0, "compiled": 1.0}, copy_gbs)
    assert result.startswith("MISSED (77%")
    _, result = gpu_bench.verdict(ws["softmax"], {"dlc": 0.9, "eager": 2, "compiled": 1.0},
                                  None)
    assert result == "ok (1.11x torch.compile)"
    rate, result = gpu_bench.verdict(ws["gemm_fp16"], {"dlc": 2.0, "eager": 1.6,
                                                       "compiled": 1.6}, None)
    assert result == "MISSED (80% of torch.matmul)" and rate.endswith("TFLOP/s")


def test_table_has_aligned_columns():
    rows = [gpu_bench.Row("copy", "copy 16 f32", None, None, None, "9 GB/s", "(ref)", ""),
            gpu_bench.Row("softmax", "softmax rows", 0.5, 1.25, 0.75, "100 GB/s",
                          "<= torch.compile", "ok (1.50x torch.compile)")]
    lines = gpu_bench.format_table(rows, "GPU").splitlines()
    assert lines[0] == "GPU" and lines[1].startswith("workload")
    assert len({len(line) for line in lines[1:]}) == 1  # every column padded
    assert "0.500" in lines[4] and "1.250" in lines[4] and "-" in lines[3]


def test_without_a_gpu_it_says_so(capsys):
    assert not torch.cuda.is_available()
    with pytest.raises(DlcError, match="needs a CUDA GPU"):
        gpu_bench.run()
    assert gpu_bench.main([]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err
