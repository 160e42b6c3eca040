"""The generated kernels compile for a real GPU (sm_90), checked on this GPU-less machine.

Triton's compiler runs on the CPU down to PTX and a cubin; it is stricter than the
interpreter (power-of-two blocks, i1 masks, pointer and mask shapes, dot operand layouts),
so every kind of kernel the backend generates is compiled once: GEMM epilogues of an MLP,
row kernels (one block and looped), argmax, index checks with the error buffer,
scatter_add's atomics, pools, 3-D batched tiles, and bfloat16 mixed precision. It runs in a
subprocess (gpu_check.run_compiling): this test process imported triton with
TRITON_INTERPRET=1, which makes triton's own helpers interpreted for good."""
import textwrap
from pathlib import Path

import pytest

from backends.triton.gpu_check import compile_for_gpu, compiled_names, run_compiling
from dlc.errors import DlcError
from tests.passes.fusion_models import example_files, example_graph

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent("""
    from backends.triton.gpu_check import print_compiled
    from dlc.ir.builder import Builder
    from dlc.ir.types import TensorType
    from tests.passes.fusion_models import example_files, example_graph

    def kinds():
        with Builder("kinds") as b:
            x = b.add_input("x", TensorType((4, 6000), "float32"))
            idx = b.add_input("idx", TensorType((4, 3), "int64"))
            img = b.add_input("img", TensorType((2, 3, 9, 9), "float32"))
            q = b.add_input("q", TensorType((16, 8, 16), "float32"))
            soft = b.emit("softmax", (x,), {"axis": 1})
            picked = b.emit("gather", (soft, idx), {"axis": 1})
            arg = b.emit("argmax", (x,), {"axis": 1, "keepdims": True})
            hits = b.emit("scatter_add", (picked, arg, picked), {"axis": 1})
            pool = b.emit("max_pool", (img,), {"kernel": 3, "stride": 2, "padding": 1})
            avg = b.emit("adaptive_avg_pool", (pool,), {"output_size": 2})
            att = b.emit("matmul", (q, b.emit("permute", (q,), {"perm": (0, 2, 1)})), {})
            total = b.emit("add", (b.emit("sum", (hits,), {"axes": (0, 1)}),
                                   b.emit("sum", (avg,), {"axes": (0, 1, 2, 3)})), {})
            out = b.emit("add", (total, b.emit("mean", (att,), {"axes": (0, 1, 2)})), {})
        return b.finish([out])

    mlp = next(p for p in example_files() if p.stem == "mlp")
    print_compiled([("mlp", example_graph(mlp), {"opt_level": "O2"}),
                    ("kinds", kinds(), {"opt_level": "O0"}),
                    ("kinds-bf16", kinds(), {"opt_level": "O0",
                                             "mixed_precision": "bfloat16"})])
""")


def test_every_kernel_kind_compiles_for_sm90(tmp_path):
    names = compiled_names(SCRIPT, tmp_path, cwd=ROOT)
    assert len(names["mlp"]) >= 3
    for label in ("kinds", "kinds-bf16"):
        text = " ".join(names[label])
        for kind in ("softmax", "gather", "argmax", "scatter_add", "max_pool", "matmul"):
            assert kind in text, (label, kind, text)


SCALARS_SCRIPT = textwrap.dedent("""
    import dlc
    from backends.triton.gpu_check import compile_for_gpu
    from tests.backends.triton.test_triton_scalars import CASES
    from tests.passes.fusion_models import mlp_train_step

    for name, fn in sorted(CASES.items()):
        graph = dlc.trace(fn, dlc.TensorSpec((4, 8)), dlc.TensorSpec(()))
        for level in ("O0", "O2"):
            assert all(k.ptx_bytes > 0 for k in compile_for_gpu(graph, 90, level)), name
    schedule = dlc.optim.warmup_cosine(1e-2, warmup=1, total=6)
    step = mlp_train_step(dlc.optim.AdamW(schedule, weight_decay=0.1))
    kernels = compile_for_gpu(step, 90, "O2")
    assert all(k.ptx_bytes > 0 for k in kernels)
    print(len(kernels))
""")


def test_scalar_operand_kernels_compile_for_sm90(tmp_path):
    """The 0-d operand cases of test_triton_scalars.py (nested selects in max/min, pow's
    broadcast, `!= 0` in the logical ops) and a training step with a warmup_cosine
    schedule compile for the GPU too, not only in the interpreter."""
    run = run_compiling(SCALARS_SCRIPT, tmp_path, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    assert int(run.stdout.split()[-1]) >= 10


def test_an_interpreting_process_is_told_to_use_another():
    mlp = next(p for p in example_files() if p.stem == "mlp")
    with pytest.raises(DlcError, match="TRITON_INTERPRET=1"):
        compile_for_gpu(example_graph(mlp))
