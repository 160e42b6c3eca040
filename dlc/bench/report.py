"""Bench results as a text table, JSON (machine + every sample) and a plot."""
from __future__ import annotations

import json
from dataclasses import asdict

from dlc.bench.floors import Floors
from dlc.bench.runner import Result
from dlc.fileio import atomic_write_text


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.3f}"


def _x(v: float | None, fmt: str = "{:.2f}x") -> str:
    return "-" if v is None else fmt.format(v)


def table(results: list[Result], floors: Floors | None) -> str:
    head = ("workload", "impl", "median ms", "min ms", "max ms", "vs eager", "of floor",
            "compile s", "max rel err")
    rows = [head]
    for r in results:
        if r.skipped:
            rows.append((r.workload, r.impl, "n/a", r.skipped, "", "", "", "", ""))
            continue
        if not r.ok:
            rows.append((r.workload, r.impl, "FAILED", r.error or "", "", "", "", "", ""))
            continue
        rows.append((r.workload, r.impl, _ms(r.median), _ms(r.min), _ms(r.max),
                     _x(r.speedup), _x(r.floor_fraction, "{:.0%}"),
                     "-" if r.compile_cold is None else f"{r.compile_cold:.3f}",
                     "-" if r.max_rel_err is None else f"{r.max_rel_err:.1e}"))
    widths = [max(len(row[i]) for row in rows if len(row[i]) < 60) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if floors:
        lines.append(f"floors: copy {floors.copy_gbs:.1f} GB/s ({floors.copy_method}), "
                     f"sgemm {floors.sgemm_gflops:.1f} GFLOP/s (numpy, n={floors.sgemm_n})")
        beside = copies_beside(results)
        if beside:
            lines.append(f"copy of the same bytes timed beside, the floor of: {beside}")
    return "\n".join(lines)


def copies_beside(results: list[Result]) -> str:
    """'ew_chain 41.0 GB/s, ...': the copy timed in the rounds of each bandwidth-bound
    workload, whose floor it is."""
    seen: dict[str, float] = {}
    for r in results:
        if r.copy_gbs is not None:
            seen.setdefault(r.workload, r.copy_gbs)
    return ", ".join(f"{w} {gbs:.1f} GB/s" for w, gbs in seen.items())


def kernel_table(r: Result) -> str:
    lines = [f"kernels of {r.workload} on {r.impl}:",
             "  kernel                     fused ms  eager ms  rate            floor  "
             "rel err  eager err  flags  ops @ loc"]
    for k in r.kernels:
        lines.append(
            f"  {k.name[:26]:26} {_ms(k.fused_s):>8}  {_ms(k.eager_s):>8}  {k.rate:15} "
            f"{_x(k.floor_fraction, '{:.0%}'):>5}  "
            f"{'-' if k.max_rel_err is None else f'{k.max_rel_err:.1e}':>7}  "
            f"{'-' if k.eager_rel_err is None else f'{k.eager_rel_err:.1e}':>9}  "
            f"{'!' + ','.join(k.flags) if k.flags else '':6} {k.ops} @ {k.loc}")
    return "\n".join(lines)


def markdown(results: list[Result], floors: Floors | None, machine: dict, command: str,
             date: str) -> str:
    """The suite table as a Markdown page (docs/benchmarks.md), with how to regenerate it."""
    v = machine["versions"]
    lines = ["# Benchmarks", "",
             f"Measured {date} on {machine['cpu']} ({machine['cores']} cores), "
             f"{machine['threads']} thread(s); " + ", ".join(f"{k} {x}" for k, x in v.items())
             + ".", "", "Regenerate with:", "", "```sh", command, "```", "",
             "Median of the samples per call; `vs eager` is dlc's eager median over this "
             "median (higher is faster); `of floor` is the machine floor (compulsory bytes / "
             "copy bandwidth, or flops / BLAS sgemm rate, whichever is larger) over this "
             "median; for a workload bound by its bytes, the floor is a copy of as many bytes "
             "timed in the same rounds as its implementations. Every implementation was "
             "checked against dlc eager before timing, then all were timed in five "
             "interleaved rounds (each round takes a fifth of every implementation's samples, "
             "in a rotating order), so that a slow spell of a shared machine falls on all of "
             "them alike.", "",
             "| workload | impl | median ms | min ms | max ms | vs eager | of floor | "
             "max rel err |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.skipped:
            continue
        if not r.ok:
            lines.append(f"| {r.workload} | {r.impl} | failed: {r.error} | | | | | |")
            continue
        err = "-" if r.max_rel_err is None else f"{r.max_rel_err:.1e}"
        lines.append(f"| {r.workload} | {r.impl} | {_ms(r.median)} | {_ms(r.min)} | "
                     f"{_ms(r.max)} | {_x(r.speedup)} | {_x(r.floor_fraction, '{:.0%}')} | "
                     f"{err} |")
    if floors:
        lines += ["", f"Floors measured in the same run: copy {floors.copy_gbs:.1f} GB/s "
                      f"({floors.copy_method}); sgemm {floors.sgemm_gflops:.1f} GFLOP/s "
                      f"(numpy, n={floors.sgemm_n})."]
        beside = copies_beside(results)
        if beside:
            lines += ["", f"Copies of the same bytes timed beside the workloads they are the "
                          f"floor of: {beside}."]
    return "\n".join(lines) + "\n"


def write_json(path: str, machine: dict, floors: Floors | None, results: list[Result],
               options: dict) -> None:
    doc = {"machine": machine, "options": options,
           "floors": None if floors is None else asdict(floors),
           "results": [asdict(r) for r in results]}
    atomic_write(path, json.dumps(doc, indent=1))


atomic_write = atomic_write_text  # the name cli_bench uses


def plot(path: str, results: list[Result]) -> None:
    """Speedup over eager per workload, one bar per implementation (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    workloads = list(dict.fromkeys(r.workload for r in results))
    impls = list(dict.fromkeys(r.impl for r in results))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(workloads)), 4))
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for i, w in enumerate(workloads):
            r = next((r for r in results if r.workload == w and r.impl == impl), None)
            if r is not None and r.ok and r.speedup:
                xs.append(i + j * width)
                ys.append(r.speedup)
        ax.bar(xs, ys, width, label=impl)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))], workloads,
                  rotation=20, ha="right")
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("speedup over dlc eager (median)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
