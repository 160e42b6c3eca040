"""The bench harness at tiny sizes: agreement checks, results, JSON and errors. Timings are
not asserted (speed is measured by `dlc bench`, never by tests)."""
import json

import numpy as np
import pytest

import dlc
from dlc.bench.floors import Floors
from dlc.bench.peers import missing, prepare
from dlc.bench.runner import build_graph, compare, random_inputs, run_workload
from dlc.cli import import_file, main
from dlc.cli_bench import SUITE_FILE, THREAD_VARS

SUITE = import_file(SUITE_FILE).SUITE
FLOORS = Floors(copy_gbs=10.0, copy_method="test", sgemm_gflops=50.0, sgemm_n=0)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    for v in THREAD_VARS:
        monkeypatch.setenv(v, "1")


# torch-compile takes seconds to compile each workload: it is checked on one small one
INSTALLED = [p for p in ("numpy", "torch", "jax", "onnxruntime") if missing(p) is None]


def _check_agreement(wl, peers: list[str]) -> list:
    results = run_workload(wl, dict(wl.tiny), ["eager"], peers, FLOORS, repeat=1, warmup=0,
                           threads=1)
    assert [r.impl for r in results] == ["eager"] + [f"peer:{p}" for p in peers]
    assert results[0].ok, f"{wl.name} eager: {results[0].error}"
    for r in results[1:]:
        if r.skipped:  # only where the workload says why the peer has no version
            assert r.skipped == wl.unavailable[r.impl.removeprefix("peer:")]
            continue
        assert r.ok, f"{wl.name} {r.impl}: {r.error}"
        assert r.median > 0 and r.floor_fraction > 0
        assert r.max_rel_err is not None and np.isfinite(r.max_rel_err)
    return results


@pytest.mark.parametrize("wl", SUITE, ids=lambda w: w.name)
def test_every_workload_agrees_with_every_installed_peer(wl):
    assert "numpy" in INSTALLED and "numpy" in wl.peers and "torch" in wl.peers
    results = _check_agreement(wl, INSTALLED)
    ran = {r.impl for r in results[1:] if not r.skipped}
    assert {"peer:numpy", "peer:torch"} <= ran


def test_onnxruntime_is_unavailable_for_training_with_a_reason():
    wl = next(w for w in SUITE if w.name == "mlp_train_adam")
    assert "onnxruntime" not in wl.peers and "inference" in wl.unavailable["onnxruntime"]
    result = run_workload(wl, dict(wl.tiny), ["eager"], ["onnxruntime"], None, 1, 0, 1)[1]
    assert result.skipped == wl.unavailable["onnxruntime"] and result.median is None


def test_torch_compile_agrees_on_a_small_workload():
    _check_agreement(next(w for w in SUITE if w.name == "softmax"), ["torch-compile"])


@pytest.mark.parametrize("peer", [p for p in ("numpy", "jax", "torch") if p in INSTALLED])
def test_training_peers_agree_after_three_updates(peer):
    """The harness compares the first step's loss (the forward); the losses of the next steps
    depend on the gradients and the Adam update, so they check the backward too."""
    wl = next(w for w in SUITE if w.name == "mlp_train_adam")
    target, graph = build_graph(wl, dict(wl.tiny))
    batch = random_inputs(graph, np.random.default_rng(7), wl.int_high)
    prepared = prepare(peer, wl.peers[peer], target, dict(wl.tiny), batch, 1, True)
    exe = dlc.compile(graph, backend="eager")
    want = [np.asarray(exe(*batch)) for _ in range(4)]   # the 4th loss follows 3 updates
    got = [prepared.outputs(prepared.call())[0] for _ in range(4)]
    assert want[3] < want[0] - 1e-3, f"dlc's loss did not fall: {want}"
    for step, (g, w) in enumerate(zip(got, want)):
        try:
            compare([g], [w], wl.rtol, wl.atol)
        except AssertionError as e:
            raise AssertionError(f"{peer}, step {step + 1}: {e}") from None


def test_compare_refuses_nan_and_disagreement():
    want = [np.ones(3)]
    with pytest.raises(AssertionError, match="NaN"):
        compare([np.array([1.0, np.nan, 1.0])], want, 1e-5, 1e-6)
    with pytest.raises(AssertionError):
        compare([np.array([1.0, 1.1, 1.0])], want, 1e-5, 1e-6)
    assert compare([np.ones(3)], want, 1e-5, 1e-6) == (0.0, 0.0)


def test_a_wrong_peer_is_reported_not_timed():
    wl = next(w for w in SUITE if w.name == "softmax")
    broken = dict(wl.peers, numpy=lambda model, size: (lambda x: x))
    wl = type(wl)(**{**wl.__dict__, "peers": broken})
    results = run_workload(wl, dict(wl.tiny), ["eager"], ["numpy"], None, 1, 0, 1)
    assert results[0].ok and not results[1].ok
    assert "Mismatch" in results[1].error or "Not equal" in results[1].error
    assert results[1].median is None


def test_cli_suite_json_and_kernels(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--suite", "standard", "--tiny", "--workloads", "softmax,gemm",
               "--peers", "numpy", "--repeat", "2", "--threads", "1", "--kernels",
               "--markdown", str(tmp_path / "b.md"), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "softmax" in text and "peer:numpy" in text and "kernels of gemm" in text
    doc = json.loads(out.read_text())
    assert doc["machine"]["threads"] == 1 and "numpy" in doc["machine"]["versions"]
    assert doc["floors"]["copy_gbs"] > 0
    eager = [r for r in doc["results"] if r["impl"] == "eager"]
    assert len(eager) == 2 and all(len(r["samples"]) == 2 for r in eager)
    page = (tmp_path / "b.md").read_text()
    assert page.startswith("# Benchmarks") and "| softmax | eager |" in page


def test_cli_model_file(capsys):
    rc = main(["bench", "examples/mlp.py", "--repeat", "1", "--no-floors", "--threads", "1"])
    assert rc == 0
    assert "examples/mlp.py:main_model" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["bench", "--suite", "standard", "--backends", "nope"], "unknown backend"),
    (["bench", "--suite", "standard", "--workloads", "nope"], "unknown workload"),
    (["bench", "--suite", "standard", "--peers", "nope"], "unknown peer"),
    (["bench", "examples/mlp.py:nothing"], "defines no 'nothing'"),
    (["bench"], "name a model"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv + ["--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_implementations_are_timed_in_interleaved_rounds(monkeypatch):
    """Each implementation's samples come in rounds that alternate with the others' (a slow
    spell of the machine lands on all of them), every one gets `repeat` samples, and one
    that fails while timed is reported without stopping the rest."""
    from dlc.bench import runner
    monkeypatch.setattr(runner, "SETTLE_S", 0.0)
    log = []

    def impl(name):
        def call():
            log.append(name)
        return call

    def broken():
        log.append("broken")
        if log.count("broken") > 3:
            raise RuntimeError("lost its device")

    timed = [(runner.Result("w", n), impl(n)) for n in ("a", "b", "c")]
    timed.append((runner.Result("w", "broken"), broken))
    runner._time_rounds(timed, repeat=10, warmup=1)
    for r, _ in timed[:3]:
        assert r.ok and len(r.samples) == 10 and r.min <= r.median <= r.max
    assert timed[3][0].error == "RuntimeError: lost its device"
    runs = [name for k, name in enumerate(log) if k == 0 or log[k - 1] != name]
    # five rounds, each starting one implementation later; the broken one drops out
    assert runs == ["a", "b", "c", "broken"] + ["b", "c", "a"] + ["c", "a", "b"] + \
        ["a", "b", "c"] + ["a", "b", "c"]


def test_threads_below_the_cores_pin_the_process_to_that_many():
    """--threads N keeps the process to N of its cores, so that a peer which takes no thread
    count (XLA) runs on N cores too; asking for more cores than there are changes nothing.
    Run in a child process: the test's own affinity stays as it is."""
    import os
    import subprocess
    import sys
    code = ("import os; from dlc.cli_bench import pin_cores; before = os.sched_getaffinity(0); "
            "wide = pin_cores(len(before) + 1); kept = pin_cores(1); "
            "print(len(before), len(wide), len(kept), len(os.sched_getaffinity(0)), "
            "set(kept) <= before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
    before, wide, kept, now, subset = out.split()
    assert int(wide) == int(before)
    assert (int(kept), int(now), subset) == (1, 1, "True")


def test_a_bandwidth_bound_floor_is_a_copy_timed_beside_it(monkeypatch):
    """A workload bound by its bytes takes as its floor a copy of as many bytes, timed in
    the same rounds as its implementations; one bound by its flops keeps the sgemm rate."""
    from dlc.bench import runner
    monkeypatch.setattr(runner, "SETTLE_S", 0.0)
    copied = []

    def fake_copy(nbytes, threads):
        copied.append(nbytes)
        return (lambda: sum(range(2000))), "test"

    monkeypatch.setattr(runner, "copy_call", fake_copy)
    by_name = {w.name: w for w in SUITE}
    chain, gemm = by_name["ew_chain"], by_name["gemm"]
    floors = Floors(copy_gbs=10.0, copy_method="test", sgemm_gflops=1e6, sgemm_n=0)
    [r] = run_workload(chain, dict(chain.tiny), ["eager"], [], floors, repeat=5, warmup=0,
                       threads=1)
    nbytes = chain.bytes(chain.tiny)
    assert copied == [nbytes]
    assert r.ok and r.copy_gbs > 0
    copy_seconds = nbytes / (r.copy_gbs * 1e9)
    assert r.floor_fraction == pytest.approx(copy_seconds / r.median)
    flops_bound = Floors(copy_gbs=1e6, copy_method="test", sgemm_gflops=1e-3, sgemm_n=0)
    [g] = run_workload(gemm, dict(gemm.tiny), ["eager"], [], flops_bound, repeat=2, warmup=0,
                       threads=1)
    assert copied == [nbytes] and g.copy_gbs is None
    assert g.floor_fraction == pytest.approx(flops_bound.seconds(gemm.flops(gemm.tiny), 0.0)
                                             / g.median)
