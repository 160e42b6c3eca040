"""`dlc bench --backends triton` under the interpreter at tiny sizes: every row runs, and
agrees with eager (the harness compares each backend's outputs with eager's before it
times them; a disagreement becomes the row's error). Timings are not asserted."""
import json

from dlc.cli import main

WORKLOADS = ("softmax", "gemm")


def test_bench_suite_runs_and_agrees_on_triton(tmp_path, capsys):
    out = tmp_path / "bench.json"
    status = main(["bench", "--suite", "standard", "--tiny", "--workloads",
                   ",".join(WORKLOADS), "--backends", "eager,triton", "--repeat", "1",
                   "--no-floors", "--threads", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    rows = json.loads(out.read_text())["results"]
    assert sorted((r["workload"], r["impl"]) for r in rows) == sorted(
        (w, impl) for w in WORKLOADS for impl in ("eager", "triton"))
    for r in rows:
        where = f"{r['workload']} on {r['impl']}"
        assert r["error"] is None and r["skipped"] is None, (where, r["error"])
        assert len(r["samples"]) == 1 and r["median"] > 0, where
        if r["impl"] == "triton":
            # compared with eager (float32 sums in another order): a few ulps of the scale
            assert r["max_rel_err"] is not None and r["max_rel_err"] < 1e-5, where
    for w in WORKLOADS:
        assert any(line.split()[:2] == [w, "triton"] for line in text.splitlines()), text
