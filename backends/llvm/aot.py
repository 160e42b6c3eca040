"""Ahead-of-time bundles: a compiled graph as files that a C program links, with no Python
and no runtime library (Glow-style).

    dlc compile model.py -o out/            (or aot.compile_bundle / aot.write_bundle)

writes into out/, for a bundle named NAME (the model's name unless given):

    NAME.o          the machine code: the graph's kernels and the C interface (aot_abi.py)
    libNAME.so      the same, linked with `cc -shared` (and -lgomp when it runs threads)
    NAME.h          the C interface: entry function, arrays, sizes, status codes
    NAME.weights    parameters, state and constants: raw little-endian arrays, each at a
                    64-byte aligned offset (absent with embed_weights: they live in NAME.o)
    NAME.dlc        the compiled graph's text form (what `dlc.load` rebuilds it from)
    manifest.json   shapes, dtypes, dlc version, target, sizes, SHA-256 of every file

`dlc.load(DIR)` (bundle.py) loads it back into Python. docs/llvm-backend.md describes the
layout and the header API.
"""
from __future__ import annotations

from contextlib import nullcontext

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np

from dlc.errors import ArgumentError
from dlc.ir.graph import Graph
from backends.llvm.aot_abi import (ABI_VERSION, ALIGNMENT, BundleError, Layout,
                                   add_c_interface, layout_of, weights_module_text,
                                   weights_symbol)
from backends.llvm.aot_header import header_text
from backends.llvm.cache import sha256
from backends.llvm.irutil import for_other_cpu
from backends.llvm.jit import default_threads, optimized_module
from backends.llvm.target import Target, aot_target_machine, host_target, resolve_target

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"


@dataclass
class Bundle:
    """A written bundle: its folder, name, files and manifest."""
    directory: Path
    name: str
    files: dict  # role ("object", "library", "header", "weights", "graph") -> Path
    manifest: dict


def c_name(text: str) -> str:
    """A C identifier made from `text` (lowercase; a leading digit gets a prefix)."""
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", text).strip("_").lower() or "model"
    return name if not name[0].isdigit() else "m_" + name


def compile_bundle(model, *specs, directory: str | os.PathLike, name: str | None = None,
                   params: dict | None = None, module=None, opt_level: str = "O2",
                   **options) -> Bundle:
    """Trace (unless `model` is a Graph), run the pass pipeline of `opt_level` and write
    the bundle; `options` go to `write_bundle` (target_cpu, embed_weights, threads)."""
    from dlc.compiler import optimized_graph
    graph = optimized_graph(model, *specs, params=params, module=module, opt_level=opt_level)
    return write_bundle(graph, directory, name=name or graph.name, params=params, **options)


def write_bundle(graph: Graph, directory: str | os.PathLike, *, name: str | None = None,
                 params: dict | None = None, target_cpu: str | None = None,
                 embed_weights: bool = False, threads: int | None = None,
                 source: str | None = None) -> Bundle:
    """Write the bundle of a graph that went through the pass pipeline. `params`
    overrides the data the graph's param/state/const inputs carry."""
    from backends.llvm import lower_program
    from backends.llvm.codegen import build_module
    name = c_name(name or graph.name)
    threads = _threads(threads)
    target = resolve_target(target_cpu)
    weights = _weights(graph, params or {})
    # the C caller's arena is scratch, not zeroed: weights are packed on every call
    program = lower_program(graph, threads, prepack=False)
    layout = layout_of(graph, program, name)
    with nullcontext() if target == host_target() else for_other_cpu():
        module = build_module(program.spec)
    add_c_interface(module, layout, embed_weights)
    obj, openmp = _object_code(str(module), layout, target, weights if embed_weights else None)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = {"object": out / f"{name}.o", "header": out / f"{name}.h",
             "graph": out / f"{name}.dlc", "library": out / f"lib{name}.so"}
    if not embed_weights:
        files["weights"] = out / f"{name}.weights"
        files["weights"].write_bytes(_weights_blob(layout, weights))
    files["object"].write_bytes(obj)
    files["graph"].write_text(str(graph))
    info = _info(graph, layout, target, threads, openmp, source, files)
    files["header"].write_text(header_text(layout, info))
    _link(files["object"], files["library"], openmp)
    manifest = _manifest(graph, layout, info, files)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return Bundle(out, name, files, manifest)


def _threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentError(f"threads must be a positive int, got {threads!r}")
    return threads


def _weights(graph: Graph, params: dict) -> dict[str, np.ndarray]:
    """name -> array for every param/state/const input, checked against its type."""
    out = {}
    for v in graph.inputs:
        if v.role == "input":
            continue
        data = params.get(v.name, v.data)
        if data is None:
            raise ArgumentError(f"no value for {v.role} {v.name!r} ({v.type}): pass it in "
                                f"params=")
        a = np.asarray(data)
        if a.shape != v.type.shape or a.dtype.name != v.type.dtype:
            raise ArgumentError(f"{v.role} {v.name!r}: expected {v.type}, got {a.dtype.name} "
                                f"of shape {a.shape}")
        out[v.name] = a
    return out


def _weights_blob(layout: Layout, weights: dict) -> bytes:
    """Every parameter at its offset, little-endian, zero padding between them."""
    blob = bytearray(layout.weights_bytes)
    for p in layout.params:
        a = np.ascontiguousarray(weights[p.name], dtype=np.dtype(p.dtype).newbyteorder("<"))
        blob[p.offset:p.offset + p.nbytes] = a.tobytes()
    return bytes(blob)


def _object_code(text: str, layout: Layout, target: Target,
                 embedded: dict | None) -> tuple[bytes, bool]:
    """(object code, whether it calls the OpenMP runtime) for the target."""
    tm = aot_target_machine(target)
    mod, tm = optimized_module(text, layout.name, tm)
    openmp = any(f.name.startswith("GOMP_") for f in mod.functions)
    if embedded is not None:
        data = _weights_blob(layout, embedded)
        wmod = llvm.parse_assembly(weights_module_text(layout.name, data,
                                                       layout.updates_weights))
        wmod.triple, wmod.data_layout = mod.triple, mod.data_layout
        mod.link_in(wmod)
        # defined here, used only here: not a symbol of the library
        mod.get_global_variable(weights_symbol(layout.name)).linkage = llvm.Linkage.internal
    return tm.emit_object(mod), openmp


def c_compiler() -> str:
    """The C compiler that links shared libraries: $CC, else cc."""
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise BundleError(f"linking the bundle's shared library needs a C compiler; "
                          f"{cc!r} was not found (set CC or install gcc/clang)")
    return path


def _link(obj: Path, library: Path, openmp: bool) -> None:
    cmd = [c_compiler(), "-shared", "-o", str(library), str(obj),
           f"-Wl,-soname,{library.name}", "-lm"] + (["-lgomp"] if openmp else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BundleError(f"linking {library} failed ({' '.join(cmd)}): "
                          f"{done.stderr.strip() or done.stdout.strip()}")


def _info(graph: Graph, layout: Layout, target: Target, threads: int, openmp: bool,
          source: str | None, files: dict) -> dict:
    from backends.llvm.cache import dlc_version
    weights = files.get("weights")
    return {"dlc_version": dlc_version(), "source": source or f"graph @{graph.name}",
            "target": target.describe(), "threads": threads, "openmp": openmp,
            "weights_file": weights.name if weights is not None else None}


def _manifest(graph: Graph, layout: Layout, info: dict, files: dict) -> dict:
    return {
        "format": "dlc-bundle", "bundle_format": BUNDLE_FORMAT, "abi_version": ABI_VERSION,
        "name": layout.name, "graph_name": graph.name, **info,
        "llvm_version": ".".join(map(str, llvm.llvm_version_info)),
        "train_step": layout.train_step, "updates_weights": layout.updates_weights,
        "model_keys": graph.meta.get("model_keys"),
        "inputs": [d.to_json() for d in layout.inputs],
        "outputs": [d.to_json() for d in layout.outputs],
        "params": [d.to_json() for d in layout.params],
        "arena": {"bytes": layout.arena_bytes, "alignment": ALIGNMENT,
                  "err_offset": layout.err_offset},
        "weights": {"bytes": layout.weights_bytes, "alignment": ALIGNMENT,
                    "embedded": info["weights_file"] is None, "file": info["weights_file"]},
        "kernels": layout.origins,
        "files": {role: {"path": p.name, "bytes": p.stat().st_size,
                         "sha256": sha256(p.read_bytes())} for role, p in files.items()},
    }
