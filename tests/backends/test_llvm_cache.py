"""The llvm backend's compile cache on disk: a second compile is a hit (counted, never
timed), every bad entry is refused and compiled again, two processes compiling the same
graph at once both succeed, and `dlc cache info|clear`. Results are checked against a
float64 numpy oracle of the model on fresh random inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc import cli, nn
from backends import llvm as llvm_backend
from backends.llvm import cache

HIDDEN = 32


def small_mlp(seed: int = 0):
    nn.init.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 8))


def oracle(model, x: np.ndarray) -> np.ndarray:
    """The MLP in float64 numpy on the model's own weights."""
    w = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    h = np.maximum(x.astype(np.float64) @ w["0.weight"].T + w["0.bias"], 0)
    return h @ w["2.weight"].T + w["2.bias"]


def check(out: np.ndarray, model, x: np.ndarray) -> None:
    assert out.dtype == np.float32 and not np.isnan(out).any()
    np.testing.assert_allclose(out, oracle(model, x), rtol=1e-5, atol=1e-6)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh cache folder, and no in-process memo of compiled graphs in front of it."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DLC_CACHE_DIR", str(root))
    monkeypatch.delenv("DLC_CACHE", raising=False)
    llvm_backend._CACHE.clear()
    yield root
    llvm_backend._CACHE.clear()


def compile_fresh(model, batch: int = 4, **options):
    """Compile as a new process would: the in-process memo is emptied first."""
    llvm_backend._CACHE.clear()
    return dlc.compile(model, dlc.TensorSpec((batch, 16)), backend="llvm", **options)


def only_entry(root: Path) -> Path:
    entries = sorted((root / "llvm").glob("*/*" + cache.SUFFIX))
    assert len(entries) == 1, entries
    return entries[0]


def test_second_compile_is_a_hit(cache_dir, rng):
    model = small_mlp()
    x = rng.standard_normal((4, 16)).astype(np.float32)
    hits, writes = cache.stats.hits, cache.stats.writes
    check(compile_fresh(model)(x), model, x)
    assert cache.stats.last == "miss" and cache.stats.writes == writes + 1
    exe = compile_fresh(model)
    assert cache.stats.last == "hit" and cache.stats.hits == hits + 1
    check(exe(x), model, x)
    assert "define" in exe.llvm_ir()  # the optimized IR travels with the entry
    cache.decode_entry(only_entry(cache_dir).read_bytes())  # a whole, valid entry


def test_key_covers_threads_and_graph(cache_dir, rng):
    model = small_mlp()
    compile_fresh(model, threads=1)
    compile_fresh(model, threads=2)
    compile_fresh(model, batch=5, threads=1)
    assert cache.stats.last == "miss"
    assert cache.info().entries == 3


def _flip_object_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[data.index(b"\n", len(cache.MAGIC)) + 100] ^= 0xFF  # inside the object code
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _other_version(path: Path) -> None:
    data = path.read_bytes()
    end = data.index(b"\n", len(cache.MAGIC))
    manifest = json.loads(data[len(cache.MAGIC):end])
    manifest["dlc_version"] = "0.0.1"
    path.write_bytes(cache.MAGIC + json.dumps(manifest).encode() + data[end:])


def _garbage_manifest(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(cache.MAGIC + b"{not json" + data[data.index(b"\n", len(cache.MAGIC)):])


@pytest.mark.parametrize("damage,reason", [(_flip_object_byte, "checksum"),
                                           (_truncate, "truncated"),
                                           (_other_version, "version"),
                                           (_garbage_manifest, "manifest")])
def test_bad_entry_is_refused_and_recompiled(cache_dir, rng, damage, reason):
    model = small_mlp()
    x = rng.standard_normal((4, 16)).astype(np.float32)
    compile_fresh(model)
    entry = only_entry(cache_dir)
    damage(entry)
    rejected, writes = cache.stats.rejected[reason], cache.stats.writes
    exe = compile_fresh(model)
    assert cache.stats.last == f"rejected:{reason}"
    assert cache.stats.rejected[reason] == rejected + 1
    assert cache.stats.writes == writes + 1  # compiled again and stored again
    check(exe(x), model, x)
    cache.decode_entry(only_entry(cache_dir).read_bytes())  # the entry is whole again
    compile_fresh(model)
    assert cache.stats.last == "hit"


def test_cache_off(monkeypatch, tmp_path, rng):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("DLC_CACHE", "0")
    model = small_mlp()
    x = rng.standard_normal((4, 16)).astype(np.float32)
    check(compile_fresh(model)(x), model, x)
    assert cache.stats.last == "off" and not (tmp_path / "c").exists()


def test_unwritable_cache_warns_and_still_compiles(monkeypatch, tmp_path, rng):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DLC_CACHE_DIR", str(blocker / "cache"))
    model = small_mlp(seed=7)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    cache._warn.cache_clear()
    with pytest.warns(RuntimeWarning, match="cannot write"):
        exe = compile_fresh(model)
    check(exe(x), model, x)


def test_prune_keeps_the_most_recent(cache_dir):
    for batch in (1, 2, 3):
        compile_fresh(small_mlp(), batch=batch, threads=1)
    files = sorted((cache_dir / "llvm").glob("*/*" + cache.SUFFIX))
    for age, path in enumerate(files):  # explicit last-use times, oldest first
        os.utime(path, (1000 + age, 1000 + age))
    newest = files[-1]
    cache.prune(cache_dir, newest.stat().st_size)
    assert [p for p in files if p.exists()] == [newest]


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    import dlc
    from dlc import nn
    from backends.llvm import cache
    go, out = Path(sys.argv[1]), sys.argv[2]
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    while not go.exists():  # start compiling together with the other process
        time.sleep(0.01)
    exe = dlc.compile(model, dlc.TensorSpec((4, 16)), backend="llvm")
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 16)
    np.savez(out, y=exe(x), x=x, event=cache.stats.last,
             **{k: v for k, v in model.state_dict().items()})
""")


def test_two_processes_compile_the_same_graph_at_once(cache_dir, tmp_path):
    go = tmp_path / "go"
    env = dict(os.environ, DLC_CACHE_DIR=str(cache_dir))
    outs = [tmp_path / f"out{i}.npz" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(go), str(o)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for o in outs]
    go.write_text("go")
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    results = [np.load(o) for o in outs]
    assert {str(r["event"]) for r in results} <= {"miss", "hit"}
    model = small_mlp(seed=0)
    for r in results:
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(r[k], v)  # the same model in both processes
        check(r["y"], model, r["x"])
    cache.decode_entry(only_entry(cache_dir).read_bytes())
    assert not list((cache_dir / "llvm").glob("*/.*.tmp"))  # no temporary file left over


def test_cli_cache_info_and_clear(cache_dir, capsys):
    compile_fresh(small_mlp(), threads=1)
    compile_fresh(small_mlp(), threads=2)
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "entries: 2" in out and str(cache_dir) in out
    size = sum(p.stat().st_size for p in (cache_dir / "llvm").glob("*/*" + cache.SUFFIX))
    assert f"bytes: {size} " in out
    assert cli.main(["cache", "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert cache.info().entries == 0
    assert cli.main(["cache", "info"]) == 0
    assert "entries: 0" in capsys.readouterr().out
