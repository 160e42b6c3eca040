"""The pass manager (levels, verify/time/dump after each pass, the pass that broke an
invariant named), dlc.compile's opt_level and dump_dir, and the CLI built on them:
`dlc dump --after/--all/--diff/--level`, the fusion and memory reports, and
`dlc compile --from-stage`."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import dlc
from dlc import cli, cli_dump, nn
from dlc.ir.graph import Graph, Node
from dlc.ir.types import TensorType
from passes.manager import (DEFAULT_LEVEL, INDEX_FILE, PIPELINES, WEIGHTS_FILE, Pass,
                            PassError, pipeline, run_pipeline)
from tests.ops.harness import TOL, assert_allclose

ROOT = Path(__file__).resolve().parents[2]
MLP_FILE = ROOT / "examples" / "mlp.py"
RTOL, ATOL = TOL["float32"]


class Small(nn.Module):
    """Linear -> LayerNorm -> GELU -> Linear -> softmax: composites to decompose and fuse."""

    def __init__(self):
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 4)

    def forward(self, x):
        h = nn.functional.gelu(self.norm(self.fc1(x)))
        return nn.functional.softmax(self.fc2(h) * 1.0, -1)


def torch_small(model: Small, x: np.ndarray) -> np.ndarray:
    w = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    F = torch.nn.functional
    h = F.linear(torch.from_numpy(x), w["fc1.weight"], w["fc1.bias"])
    h = F.gelu(F.layer_norm(h, (8,), w["norm.weight"], w["norm.bias"]))
    return torch.softmax(F.linear(h, w["fc2.weight"], w["fc2.bias"]), -1).numpy()


def small_graph() -> tuple[Small, Graph]:
    model = Small()
    return model, dlc.trace(model, dlc.TensorSpec((5, 6), name="x"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- levels and the pipeline -------------------------------------------------------------------
def test_levels():
    assert PIPELINES["O0"] == ()
    assert PIPELINES["O1"] == ("decompose", "fold", "algebra", "cse", "dce")
    assert PIPELINES["O2"] == PIPELINES["O1"] + ("fuse", "schedule", "plan_memory")
    assert DEFAULT_LEVEL == "O2"
    with pytest.raises(dlc.DlcError, match="unknown optimization level 'O9'.*O0, O1, O2"):
        pipeline("O9")
    with pytest.raises(dlc.DlcError, match="unknown optimization level"):
        dlc.compile(small_graph()[1], opt_level="O9")


@pytest.mark.parametrize("level", ["O0", "O1", "O2"])
def test_compile_at_each_level_matches_torch(level, rng, tmp_path):
    model, graph = small_graph()
    x = rng.standard_normal((5, 6)).astype(np.float32)
    exe = dlc.compile(model, dlc.TensorSpec((5, 6), name="x"), opt_level=level,
                      dump_dir=tmp_path)
    assert_allclose(exe(x), torch_small(model, x), RTOL, ATOL)
    names = [p.name for p in sorted(tmp_path.glob("*.dlc"))]
    assert names == [f"{i:02d}-{n}.dlc" for i, n in enumerate(("traced",) + PIPELINES[level])]


def test_dump_dir_holds_every_stage_the_index_and_the_weights(tmp_path):
    model, graph = small_graph()
    result = run_pipeline(graph, "O2", dump_dir=tmp_path)
    assert [s.name for s in result.stages] == ["traced", *PIPELINES["O2"]]
    for stage in result.stages:
        text = (tmp_path / stage.file_name).read_text()
        assert text == str(stage.graph) + "\n"
        assert str(dlc.parse(text)) + "\n" == text  # every stage reads back
    rows = [ln.split() for ln in (tmp_path / INDEX_FILE).read_text().splitlines()
            if not ln.startswith("#")]
    assert rows[0] == ["stage", "pass", "nodes", "kernels", "bytes", "time_ms"]
    for row, stage in zip(rows[1:], result.stages):
        assert row[:5] == [f"{stage.index:02d}", stage.name, str(stage.nodes),
                           str(stage.kernels), str(stage.bytes)]
        assert row[5] == "-" if stage.index == 0 else float(row[5]) >= 0
    assert len(rows) == len(result.stages) + 1
    fused, planned = result.stage("fuse").graph, result.stage("plan_memory").graph
    assert result.stage("fuse").kernels == len(fused.nodes) < len(graph.nodes)
    assert result.stage("fuse").nodes == sum(1 for _ in fused.walk())
    assert result.stage("plan_memory").bytes == planned.meta["memory_plan"].arena_bytes
    with np.load(tmp_path / WEIGHTS_FILE) as weights:
        for name, array in model.state_dict().items():
            np.testing.assert_array_equal(weights[name], array)


def test_stop_after_and_unknown_names():
    _, graph = small_graph()
    result = run_pipeline(graph, "O2", stop_after="cse")
    assert [s.name for s in result.stages] == ["traced", "decompose", "fold", "algebra", "cse"]
    with pytest.raises(dlc.DlcError, match="not in the O1 pipeline"):
        run_pipeline(graph, "O1", stop_after="fuse")
    with pytest.raises(dlc.DlcError, match="unknown pass 'cse2'"):
        run_pipeline(graph, passes=["cse2"])
    with pytest.raises(dlc.DlcError, match="no stage 'fuse'.*traced, decompose"):
        result.stage("fuse")


# -- a pass that breaks the graph is named -----------------------------------------------------
def _wrong_type(graph: Graph) -> Graph:
    """Claims the first node yields another shape."""
    n = graph.nodes[0]
    bad = Node(n.op, n.inputs, n.attrs, TensorType((99,), n.type.dtype), n.loc, n.scope)
    nodes = [bad] + graph.nodes[1:]
    return Graph(graph.inputs, nodes, [bad if v is n else v for v in graph.outputs],
                 graph.name, graph.aliases, graph.meta)


def _drop_output(graph: Graph) -> Graph:
    return Graph(graph.inputs, graph.nodes, graph.outputs[:0], graph.name)


def _fails(graph: Graph) -> Graph:
    raise dlc.ShapeError("no room for this")


def test_a_pass_that_breaks_an_invariant_is_named():
    _, graph = small_graph()
    with pytest.raises(PassError, match=r"pass typo broke the graph: .*recorded type f32\[99\]"):
        run_pipeline(graph, passes=["cse", Pass("typo", _wrong_type)])  # verify: on in tests
    with pytest.raises(PassError, match="pass dropper broke the graph: the outputs changed"):
        run_pipeline(graph, passes=[Pass("dropper", _drop_output)], verify=True)
    with pytest.raises(dlc.ShapeError, match="^pass failing: no room for this"):
        run_pipeline(graph, passes=[Pass("failing", _fails)])
    unchecked = run_pipeline(graph, passes=[Pass("typo", _wrong_type)], verify=False)
    assert unchecked.graph.nodes[0].type.shape == (99,)  # verify=False really skips it


def test_an_invalid_input_graph_is_reported_before_any_pass():
    _, graph = small_graph()
    with pytest.raises(dlc.VerifyError, match="the input of the pass pipeline is invalid"):
        run_pipeline(_wrong_type(graph), "O1")


def test_a_pass_whose_module_is_missing_is_skipped_with_a_warning(tmp_path):
    _, graph = small_graph()
    ghost = Pass("ghost", "passes.no_such_module:ghost")
    with pytest.warns(RuntimeWarning, match="pass ghost is not available"):
        result = run_pipeline(graph, passes=["cse", ghost, "dce"], dump_dir=tmp_path)
    assert [s.name for s in result.stages] == ["traced", "cse", "dce"]
    assert result.skipped[0][0] == "ghost"
    assert "# skipped ghost" in (tmp_path / INDEX_FILE).read_text()
    with pytest.raises(dlc.DlcError, match="pass ghost did not run"):
        result.stage("ghost")
    with pytest.raises(dlc.DlcError, match="pass ghost is not available"):
        run_pipeline(graph, passes=[ghost], stop_after="ghost")


def test_a_parsed_graph_compiles_at_each_level_with_params(rng):
    model, graph = small_graph()
    parsed = dlc.parse(str(graph))
    x = rng.standard_normal((5, 6)).astype(np.float32)
    for level in PIPELINES:
        got = dlc.compile(parsed, params=model.state_dict(), opt_level=level)(x)
        assert_allclose(got, torch_small(model, x), RTOL, ATOL, err_msg=level)
    with pytest.raises(dlc.DlcError, match="params for unknown inputs: nope"):
        dlc.compile(parsed, params={"nope": np.zeros(1)})
    with pytest.raises(dlc.DlcError, match=r"param 'fc1.bias': expected f32\[8\]"):
        dlc.compile(parsed, params={**model.state_dict(), "fc1.bias": np.zeros(3, np.float32)})


# -- dlc dump ----------------------------------------------------------------------------------
def mlp_result(level: str = "O2", **options):
    graph = cli.trace_model(cli.load_model(str(MLP_FILE)))
    return run_pipeline(graph, level, keep_text=True, **options)


def test_dump_after_prints_that_stage(capsys):
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--after", "fuse", "--verify")
    assert status == 0, err
    assert out == mlp_result().stage("fuse").text + "\n"
    assert "fused(" in out
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--level", "O1")
    assert status == 0, err
    assert out == mlp_result("O1").stages[-1].text + "\n"


def test_dump_all_writes_the_stages(capsys, tmp_path):
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--all", str(tmp_path / "d"))
    assert status == 0, err
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == [f"{i:02d}-{n}.dlc" for i, n in enumerate(("traced",) + PIPELINES["O2"])] \
        + [INDEX_FILE, WEIGHTS_FILE]
    assert out.startswith("# dlc pass pipeline O2 of @MLP")
    assert (tmp_path / "d" / INDEX_FILE).read_text() in out


def test_dump_diff_shows_what_one_pass_changed(capsys):
    def f(x):
        return (-(-x) * 1.0).exp() + (-(-x) * 1.0).exp()

    graph = dlc.trace(f, dlc.TensorSpec((4,), name="x"))
    result = run_pipeline(graph, "O1")
    from passes.stage_diff import diff_stages
    cse_diff = diff_stages(result.stage("algebra").graph, result.stage("cse").graph)
    # the second neg, full and exp go (dce drops the first neg later); the add now reads
    # the one exp twice and keeps its number in the aligned text
    assert (cse_diff.removed, cse_diff.added) == (3, 0)
    lines = cse_diff.text.splitlines()
    assert [ln.split(" = ")[1].split("(")[0] for ln in lines if ln.startswith("-  %")] == \
        ["neg", "full", "exp", "add"]
    assert [ln.split(" loc")[0] for ln in lines if ln.startswith("+  %")] == \
        ["+  %6: f32[4] = add(%2, %2)"]

    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--diff", "fuse")
    assert status == 0, err
    first, *rest = out.splitlines()
    m = re.match(r"pass fuse: (\d+) nodes removed, (\d+) added \((\d+) -> (\d+) top-level", first)
    assert m, first
    removed, added, before, after = map(int, m.groups())
    assert before - removed + added == after and added == 3
    assert rest[0].startswith("--- 05-dce.dlc") and rest[1].startswith("+++ 06-fuse.dlc")
    assert sum(ln.startswith("-  %") for ln in rest) == removed


def test_dump_bad_stage_names_are_usage_errors(capsys):
    status, _, err = run_cli(capsys, "dump", str(MLP_FILE), "--after", "fuse", "--level", "O1")
    assert status == 2 and "--after fuse: not a pass of the O1 pipeline" in err
    status, _, err = run_cli(capsys, "dump", str(MLP_FILE), "--diff", "traced")
    assert status == 2 and "--diff traced" in err


def test_dump_reports_of_fusion_and_memory(capsys, tmp_path):
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--explain-fusion", "--memory")
    assert status == 0, err
    from passes.fuse import explain_fusion
    from passes.memory import memory_table
    result = mlp_result()
    assert explain_fusion(result.stage("fuse").graph).strip() in out
    assert memory_table(result.stage("plan_memory").graph).strip() in out


def test_memory_plot_needs_matplotlib(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_dump, "matplotlib_available", lambda: False)
    status, _, err = run_cli(capsys, "dump", str(MLP_FILE), "--memory-plot",
                             str(tmp_path / "m.png"))
    assert status == 2 and "pip install dlc[plot]" in err and len(err.splitlines()) == 1


# -- dlc compile --from-stage ------------------------------------------------------------------
def dump_mlp(capsys, directory: Path) -> None:
    assert run_cli(capsys, "dump", str(MLP_FILE), "--all", str(directory))[0] == 0


def output_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("output 0: ")]
    assert len(lines) == 1, out
    return lines[0]


def test_compile_from_an_edited_stage(capsys, tmp_path):
    dump_mlp(capsys, tmp_path)
    stage = tmp_path / "05-dce.dlc"
    text = stage.read_text()
    edited = re.sub(r"= add\((%\d+), %fc3\.bias\)", r"= sub(\1, %fc3.bias)", text)
    assert edited != text
    stage.write_text(edited)
    status, out, err = run_cli(capsys, "compile", "--from-stage", str(stage))
    assert status == 0, err
    assert "passes run: fuse, schedule, plan_memory" in out
    # the oracle: torch on the dumped weights, with fc3's bias subtracted as edited
    with np.load(tmp_path / WEIGHTS_FILE) as w:
        weights = {k: torch.from_numpy(w[k]) for k in w.files}
    x = np.random.default_rng(0).random((64, 784)).astype(np.float32)  # the CLI's --seed 0
    h = torch.from_numpy(x)
    for layer in ("fc1", "fc2"):
        h = torch.relu(h @ weights[f"{layer}.weight"].T + weights[f"{layer}.bias"])
    want = (h @ weights["fc3.weight"].T - weights["fc3.bias"]).numpy()
    exe = dlc.compile(dlc.parse(edited), params={k: v.numpy() for k, v in weights.items()})
    got = exe(x)
    assert_allclose(got, want, RTOL, ATOL)
    assert output_line(out) == f"output 0: {cli.summarize(got)}"


def test_compile_from_stage_finds_weights_or_says_where_it_looked(capsys, tmp_path):
    dump_mlp(capsys, tmp_path / "d")
    stage = tmp_path / "d" / "08-plan_memory.dlc"
    status, out, err = run_cli(capsys, "compile", "--from-stage", str(stage), "--level", "O1")
    assert status == 0, err
    assert "passes run: none" in out
    alone = tmp_path / "alone.dlc"
    alone.write_text(stage.read_text())
    status, _, err = run_cli(capsys, "compile", "--from-stage", str(alone))
    assert status == 2 and "no weights for %fc1.weight" in err and "--params" in err
    status, out, err = run_cli(capsys, "compile", "--from-stage", str(alone), "--params",
                               str(tmp_path / "d" / WEIGHTS_FILE))
    assert status == 0, err


def test_compile_from_stage_rejects_a_bad_edit_at_its_line_and_column(capsys, tmp_path):
    dump_mlp(capsys, tmp_path)
    stage = tmp_path / "05-dce.dlc"
    lines = stage.read_text().splitlines()
    row = next(i for i, ln in enumerate(lines) if "= relu(" in ln)
    lines[row] = re.sub(r"relu\(%\d+\)", "relu(%99)", lines[row])  # a value never defined
    stage.write_text("\n".join(lines) + "\n")
    status, _, err = run_cli(capsys, "compile", "--from-stage", str(stage))
    col = lines[row].index("%99") + 1
    assert status == 1, err
    assert f"05-dce.dlc:{row + 1}:{col}:" in err and "%99" in err


def test_compile_from_stage_rejects_overlapping_offsets_at_their_line(capsys, tmp_path):
    """A pinned offset that makes two live values share bytes: the memory plan's verifier
    rejects the edited stage, citing the node's line:col."""
    dump_mlp(capsys, tmp_path)
    stage = tmp_path / "08-plan_memory.dlc"
    lines = stage.read_text().splitlines()
    row = next(i for i, ln in enumerate(lines) if "fused1_" in ln and "offset(" in ln)
    # fused0's value lives at offset 0 until fused1, which reads it, has run
    assert re.search(r"fused0_.* offset\(0\)", "\n".join(lines))
    lines[row] = re.sub(r"offset\(\d+\)", "offset(0)", lines[row])
    stage.write_text("\n".join(lines) + "\n")
    status, _, err = run_cli(capsys, "compile", "--from-stage", str(stage))
    assert status == 1, err
    assert re.search(rf"08-plan_memory.dlc:{row + 1}:\d+: .*overlaps", err), err


def test_memory_plot_writes_a_png(capsys, tmp_path):
    target = tmp_path / "memory.png"
    status, out, err = run_cli(capsys, "dump", str(MLP_FILE), "--memory-plot", str(target))
    assert status == 0, err
    assert target.read_bytes().startswith(b"\x89PNG") and f"wrote {target}" in out


def test_compile_needs_a_model_or_a_stage(capsys):
    status, _, err = run_cli(capsys, "compile")
    assert status == 2 and "either MODEL or --from-stage" in err
