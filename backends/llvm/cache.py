"""The llvm backend's compile cache on disk: optimized machine code, keyed by what made it.

A graph compiled once is loaded from the cache the next time, in any process: the code
generator and LLVM do not run again. The key is a SHA-256 of the canonical IR text (with
its memory plan and aliases), the target (triple, CPU name and features), the options
(threads, optimization level), the dlc version, the LLVM version and a hash of the
compiler's own source, so an entry is only ever reused for exactly what produced it.

An entry is one file, DIR/llvm/KK/KEY.entry:

    DLC-LLVM-CACHE 1\\n
    {manifest as one line of JSON}\\n
    object code (ELF, `object.bytes` long)
    the optimized LLVM IR, gzip-compressed (`ir.bytes` long)

The manifest records the key, the versions, the target and the size and SHA-256 of both
parts. It is written to a temporary file and moved into place with os.replace, so readers
see a whole entry or none and two processes compiling the same graph both succeed. An
entry that is truncated, corrupted, of another version or for another key is refused
before LLVM sees it (`stats.rejected` counts why) and the graph is compiled again.

Where: $DLC_CACHE_DIR, else $XDG_CACHE_HOME/dlc, else ~/.cache/dlc. DLC_CACHE=0 turns the
cache off. Entries not used recently are removed when the cache grows past
$DLC_CACHE_MAX_BYTES (default 1 GiB).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import llvmlite.binding as llvm

from dlc.ir.graph import Graph
from backends.llvm.jit import (JitModule, compile_ir, load_runtime, optimized_module,
                               target_machine)
from backends.llvm.target import Target, host_target

FORMAT = 1
MAGIC = b"DLC-LLVM-CACHE %d\n" % FORMAT
SUFFIX = ".entry"
OPT_LEVEL = 3
DEFAULT_MAX_BYTES = 1 << 30
# the code whose changes change the generated code (beside the IR text itself)
SOURCE_DIRS = ("backends/llvm", "passes/decompose", "dlc/ops")
SOURCE_FILES = ("passes/decompose.py",)
ROOT = Path(__file__).resolve().parents[2]


class CacheEntryError(Exception):
    """An entry that must not be loaded; `reason` says why (for stats and messages)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class CacheStats:
    """What the cache did in this process (tests read these instead of timing)."""
    hits: int = 0
    misses: int = 0
    writes: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    last: str = ""  # "hit", "miss", "rejected:<reason>" or "off" for the latest compile


stats = CacheStats()


# -- configuration: the environment maps onto these in one place ---------------------------
def cache_dir() -> Path | None:
    """The cache's folder, or None when DLC_CACHE=0 turns it off."""
    if os.environ.get("DLC_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    given = os.environ.get("DLC_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlc"


def max_bytes() -> int:
    try:
        return int(os.environ.get("DLC_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES))
    except ValueError:
        return DEFAULT_MAX_BYTES


# -- the key --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """SHA-256 of the compiler source that turns a graph into machine code."""
    h = hashlib.sha256()
    files = [ROOT / f for f in SOURCE_FILES]
    for d in SOURCE_DIRS:
        files += (ROOT / d).rglob("*.py")
    for path in sorted(set(files)):
        if path.is_file():
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def dlc_version() -> str:
    from dlc import __version__
    return __version__


def cache_key(graph: Graph, threads: int, target: Target) -> str:
    """The hex SHA-256 that names a graph's entry."""
    parts = {
        "format": FORMAT,
        "dlc": dlc_version(),
        "llvm": list(llvm.llvm_version_info),
        "source": source_fingerprint(),
        "target": target.describe(),
        "options": {"threads": threads, "opt_level": OPT_LEVEL},
        "graph": str(graph),
        "plan": repr(graph.meta.get("memory_plan")),
        "aliases": sorted(graph.aliases.items()),
        "train_step": bool(graph.meta.get("train_step")),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def entry_path(root: Path, key: str) -> Path:
    return root / "llvm" / key[:2] / (key + SUFFIX)


# -- reading and writing entries ------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_entry(manifest: dict, obj: bytes, ir_gz: bytes) -> bytes:
    manifest = dict(manifest, object={"bytes": len(obj), "sha256": sha256(obj)},
                    ir={"bytes": len(ir_gz), "sha256": sha256(ir_gz)})
    return MAGIC + json.dumps(manifest, sort_keys=True).encode() + b"\n" + obj + ir_gz


def decode_entry(data: bytes, key: str | None = None) -> tuple[dict, bytes, bytes]:
    """(manifest, object code, gzipped IR) of an entry's bytes, every part verified."""
    if not data.startswith(MAGIC):
        raise CacheEntryError("format", "not a dlc cache entry of format "
                                        f"{FORMAT} (it does not start with {MAGIC!r})")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise CacheEntryError("truncated", "the manifest line is cut off")
    try:
        manifest = json.loads(data[len(MAGIC):end])
        obj_size, obj_sum = manifest["object"]["bytes"], manifest["object"]["sha256"]
        ir_size, ir_sum = manifest["ir"]["bytes"], manifest["ir"]["sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise CacheEntryError("manifest", f"unreadable manifest ({e})") from None
    if manifest.get("dlc_version") != dlc_version() or manifest.get("format") != FORMAT:
        raise CacheEntryError("version", f"made by dlc {manifest.get('dlc_version')} "
                                         f"(format {manifest.get('format')}), this is dlc "
                                         f"{dlc_version()} (format {FORMAT})")
    if key is not None and manifest.get("key") != key:
        raise CacheEntryError("key", "the manifest names another key")
    body = data[end + 1:]
    if len(body) != obj_size + ir_size:
        reason = "truncated" if len(body) < obj_size + ir_size else "size"
        raise CacheEntryError(reason, f"{len(body)} bytes of code, the manifest says "
                                      f"{obj_size + ir_size}")
    obj, ir_gz = body[:obj_size], body[obj_size:]
    if sha256(obj) != obj_sum or sha256(ir_gz) != ir_sum:
        raise CacheEntryError("checksum", "the SHA-256 of the code does not match the "
                                          "manifest")
    return manifest, obj, ir_gz


def read_entry(path: Path, key: str) -> tuple[dict, bytes, bytes] | None:
    """The verified entry at `path`, or None when there is none."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return decode_entry(data, key)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# -- compiling through the cache -------------------------------------------------------------
class CachedJitModule(JitModule):
    """A JitModule whose machine code came from an object file. Its optimized IR is kept as
    text; the module is parsed from it only when someone asks for assembly."""

    def __init__(self, engine, target, ir_text: str, module=None):
        super().__init__(engine, module, target, "")
        self.ir_text = ir_text

    def optimized_ir(self) -> str:
        return self.ir_text

    def assembly(self) -> str:
        if self.module is None:
            self.module = llvm.parse_assembly(self.ir_text)
        return self.target.emit_assembly(self.module)


def load_object(obj: bytes, tm) -> object:
    """An MCJIT engine running the machine code of an object file."""
    load_runtime()
    empty = llvm.parse_assembly("")
    empty.triple = tm.triple
    empty.data_layout = str(tm.target_data)
    engine = llvm.create_mcjit_compiler(empty, tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


def compile_to_object(text: str, name: str, tm=None) -> tuple[object, bytes, object]:
    """(optimized module, object code, target machine) of LLVM IR text."""
    mod, tm = optimized_module(text, name, tm)
    return mod, tm.emit_object(mod), tm


def compile_cached(graph: Graph, threads: int, make_ir: Callable[[], str],
                   name: str = "dlc") -> JitModule:
    """The JIT-compiled code of `graph`: from the cache when it holds a valid entry, else
    compiled from `make_ir()` (called only then) and stored."""
    root = cache_dir()
    if root is None:
        stats.last = "off"
        return compile_ir(make_ir(), name)
    target = host_target()
    key = cache_key(graph, threads, target)
    path = entry_path(root, key)
    hit = _try_load(path, key)
    if hit is not None:
        return hit
    mod, obj, tm = compile_to_object(make_ir(), name)
    ir_text = str(mod)
    manifest = {"format": FORMAT, "key": key, "dlc_version": dlc_version(),
                "graph": graph.name, "target": target.describe(), "threads": threads,
                "opt_level": OPT_LEVEL, "created": time.time()}
    _store(root, path, encode_entry(manifest, obj, gzip.compress(ir_text.encode(), 1)))
    return CachedJitModule(load_object(obj, tm), tm, ir_text, mod)


def _try_load(path: Path, key: str) -> CachedJitModule | None:
    try:
        entry = read_entry(path, key)
    except CacheEntryError as e:
        stats.rejected[e.reason] += 1
        stats.last = f"rejected:{e.reason}"
        return None
    except OSError as e:
        _warn(f"cannot read {path}: {e}")
        entry = None
    if entry is None:
        stats.misses += 1
        stats.last = "miss"
        return None
    _, obj, ir_gz = entry
    tm = target_machine()
    jit = CachedJitModule(load_object(obj, tm), tm, gzip.decompress(ir_gz).decode())
    stats.hits += 1
    stats.last = "hit"
    try:
        os.utime(path)  # recently used: pruned last
    except OSError:
        pass
    return jit


def _store(root: Path, path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
        stats.writes += 1
        prune(root, max_bytes())
    except OSError as e:
        _warn(f"cannot write {path}: {e}")


@functools.lru_cache(maxsize=None)
def _warn(message: str) -> None:
    warnings.warn(f"dlc compile cache: {message}; compiling without it", RuntimeWarning,
                  stacklevel=3)


# -- inspecting and clearing ------------------------------------------------------------------
@dataclass
class CacheInfo:
    location: Path | None
    entries: int = 0
    bytes: int = 0
    enabled: bool = True


def _entries(root: Path) -> list[Path]:
    base = root / "llvm"
    return sorted(base.glob(f"*/*{SUFFIX}")) if base.is_dir() else []


def info(root: Path | None = None) -> CacheInfo:
    """How many entries the cache holds and their total size."""
    root = cache_dir() if root is None else root
    if root is None:
        return CacheInfo(None, enabled=False)
    files = _entries(root)
    return CacheInfo(root, len(files), sum(_size(p) for p in files))


def clear(root: Path | None = None) -> CacheInfo:
    """Remove every entry (and stray temporary files); returns what was removed."""
    root = cache_dir() if root is None else root
    if root is None:
        return CacheInfo(None, enabled=False)
    removed = info(root)
    base = root / "llvm"
    if base.is_dir():
        for p in list(base.glob(f"*/*{SUFFIX}")) + list(base.glob("*/.*.tmp")):
            p.unlink(missing_ok=True)
        for d in base.iterdir():
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return removed


def prune(root: Path, limit: int) -> None:
    """Remove the least recently used entries until the cache holds at most `limit`."""
    files = _entries(root)
    sizes = {p: _size(p) for p in files}
    total = sum(sizes.values())
    if total <= limit:
        return
    for p in sorted(files, key=_mtime):
        if total <= limit:
            break
        p.unlink(missing_ok=True)
        total -= sizes[p]


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
