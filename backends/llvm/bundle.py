"""`dlc.load(DIR)`: an ahead-of-time bundle (aot.py) back in Python, as an Executable.

Loading checks the bundle before any of its code runs: the manifest must be one this dlc
wrote (format, ABI and dlc version), every file it lists must have its recorded size and
SHA-256, the weights file must be exactly the weights block, and the target's CPU features
must exist on this machine. Anything else is refused with a BundleLoadError naming the file.

The Executable calls the bundle's C entry (NAME_run in libNAME.so) through ctypes, with the
same contract as the llvm backend's: arrays are checked before the call, parameters and
state live in one weights block owned by the Executable (views of it are `exe.state`), and
a training step updates them in place.
"""
from __future__ import annotations

import ctypes
import json
import os
import threading
from pathlib import Path

import numpy as np

from dlc.errors import DlcError
from backends.executable import Executable
from backends.llvm.aot_abi import (ABI_VERSION, ALIGNMENT, ERR_SLOTS, INDEX_ERROR, NONFINITE,
                                   BundleError, TensorDesc)
from backends.llvm.cache import dlc_version, sha256

MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1
RUN_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.c_void_p] * 4))


class BundleLoadError(BundleError):
    """A bundle that is missing, corrupted, truncated or made by another version."""


def load(directory: str | os.PathLike) -> "BundleExecutable":
    """Load the bundle that `dlc compile ... -o DIR` (or aot.write_bundle) wrote in DIR."""
    root = Path(directory)
    manifest = read_manifest(root)
    verify_files(root, manifest)
    return BundleExecutable(root, manifest)


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleLoadError(f"{root}: no such bundle folder")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleLoadError(f"{path}: missing; {root} is not a dlc bundle (write one with "
                              f"`dlc compile MODEL -o {root}`)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BundleLoadError(f"{path}: unreadable or corrupted manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "dlc-bundle":
        raise BundleLoadError(f"{path}: not a dlc bundle manifest")
    _check_versions(path, manifest)
    return manifest


def _check_versions(path: Path, manifest: dict) -> None:
    if manifest.get("bundle_format") != BUNDLE_FORMAT or \
            manifest.get("abi_version") != ABI_VERSION:
        raise BundleLoadError(f"{path}: bundle format {manifest.get('bundle_format')} / ABI "
                              f"{manifest.get('abi_version')}; this dlc reads format "
                              f"{BUNDLE_FORMAT} / ABI {ABI_VERSION}")
    if manifest.get("dlc_version") != dlc_version():
        raise BundleLoadError(f"{path}: the bundle was made by dlc "
                              f"{manifest.get('dlc_version')}, this is dlc {dlc_version()}; "
                              f"compile it again")


def verify_files(root: Path, manifest: dict) -> None:
    """Every listed file exists with its recorded size and SHA-256."""
    files = manifest.get("files")
    if not isinstance(files, dict) or "library" not in files or "graph" not in files:
        raise BundleLoadError(f"{root / MANIFEST}: lists no library or graph file")
    for role, entry in files.items():
        path = root / entry["path"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BundleLoadError(f"{path}: missing ({role} of the bundle)") from None
        if len(data) != entry["bytes"]:
            how = "truncated" if len(data) < entry["bytes"] else "longer than recorded"
            raise BundleLoadError(f"{path}: {how} ({len(data)} bytes, the manifest says "
                                  f"{entry['bytes']})")
        if sha256(data) != entry["sha256"]:
            raise BundleLoadError(f"{path}: corrupted (its SHA-256 does not match the "
                                  f"manifest)")


def _check_target(root: Path, manifest: dict) -> None:
    from backends.llvm.target import Target, runs_here
    t = manifest["target"]
    missing = runs_here(Target(t["triple"], t["cpu"], t["features"]))
    if missing:
        raise BundleLoadError(f"{root}: compiled for cpu {t['cpu']} with features this "
                              f"machine lacks: {', '.join(missing[:8])}")


def _graph(root: Path, manifest: dict):
    from dlc.ir import parse
    path = root / manifest["files"]["graph"]["path"]
    graph = parse(path.read_text(), str(path))
    if manifest.get("train_step"):
        graph.meta["train_step"] = True
    if manifest.get("model_keys") is not None:
        graph.meta["model_keys"] = list(manifest["model_keys"])
    return graph


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _aligned_bytes(nbytes: int) -> np.ndarray:
    raw = np.zeros(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-_address(raw)) % ALIGNMENT
    return raw[start:start + nbytes]


class BundleExecutable(Executable):
    """An Executable running a bundle's shared library."""
    backend = "llvm-aot"

    def __init__(self, root: Path, manifest: dict):
        _check_target(root, manifest)
        self.root, self.manifest = root, manifest
        self.params_desc = [TensorDesc.from_json(d) for d in manifest["params"]]
        self.weights = _aligned_bytes(manifest["weights"]["bytes"])
        self._load_weights(root, manifest)
        self._views = {p.name: self._view(p) for p in self.params_desc}
        super().__init__(_graph(root, manifest), self._views)
        # the Executable's params and state are views of the weights block
        self.state = dict(self._views)
        self.arena = _aligned_bytes(manifest["arena"]["bytes"])
        self._lib = ctypes.CDLL(str(root / manifest["files"]["library"]["path"]))
        self._run = RUN_TYPE(("%s_run" % manifest["name"], self._lib))
        self._abi_check()
        self._lock = threading.Lock()

    def _view(self, p: TensorDesc) -> np.ndarray:
        dtype = np.dtype(p.dtype).newbyteorder("<")
        return self.weights[p.offset:p.offset + p.nbytes].view(dtype).reshape(p.shape)

    def _load_weights(self, root: Path, manifest: dict) -> None:
        if manifest["weights"]["embedded"]:
            lib = ctypes.CDLL(str(root / manifest["files"]["library"]["path"]))
            fn = getattr(lib, f"{manifest['name']}_embedded_weights")
            fn.restype = ctypes.c_void_p
            n = manifest["weights"]["bytes"]
            if n:
                self.weights[:] = np.frombuffer(ctypes.string_at(fn(), n), dtype=np.uint8)
            return
        path = root / manifest["files"]["weights"]["path"]
        data = path.read_bytes()
        if len(data) != len(self.weights):
            raise BundleLoadError(f"{path}: {len(data)} bytes, the weights block is "
                                  f"{len(self.weights)}")
        self.weights[:] = np.frombuffer(data, dtype=np.uint8)

    def _abi_check(self) -> None:
        fn = getattr(self._lib, f"{self.manifest['name']}_abi_version")
        fn.restype = ctypes.c_int32
        if fn() != ABI_VERSION:
            raise BundleLoadError(f"{self.root}: the library's ABI is {fn()}, expected "
                                  f"{ABI_VERSION}")

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        graph = self.graph
        self._sync_state()
        user = [np.ascontiguousarray(a) for v, a in zip(graph.inputs, inputs)
                if v.role == "input"]
        returned = [np.empty(v.type.shape, dtype=v.type.dtype)
                    for j, v in enumerate(graph.outputs) if j not in graph.aliases]
        ins = (ctypes.c_void_p * max(len(user), 1))(*[_address(a) for a in user])
        outs = (ctypes.c_void_p * max(len(returned), 1))(*[_address(a) for a in returned])
        with self._lock:
            status = self._run(ctypes.addressof(ins), ctypes.addressof(outs),
                               _address(self.weights), _address(self.arena))
            err = self.arena[self.manifest["arena"]["err_offset"]:][:8 * ERR_SLOTS] \
                .view(np.int64).copy()
        if status not in (0, NONFINITE):
            raise self._error(status, err)
        results, it = [], iter(returned)
        for j in range(len(graph.outputs)):
            results.append(self.state[graph.aliases[j]] if j in graph.aliases else next(it))
        return results

    def _sync_state(self) -> None:
        """load_state_dict replaces state arrays: copy them back into the weights block."""
        for name, view in self._views.items():
            if self.state[name] is not view:
                np.copyto(view, self.state[name])
                self.state[name] = view

    def _error(self, status: int, err: np.ndarray) -> DlcError:
        kernels = self.manifest.get("kernels", [])
        k = int(err[ERR_SLOTS - 1])
        where = kernels[k] if 0 <= k < len(kernels) else "a kernel"
        if status == INDEX_ERROR:
            axis, index, size = (int(v) for v in err[1:4])
            valid = f"{-size}..{size - 1}" if size else "none: the axis is empty"
            return DlcError(f"{where}: index {index} is out of range for axis {axis} of "
                            f"size {size} (valid: {valid})")
        return DlcError(f"{where}: the bundle {self.manifest['name']} reported status "
                        f"{status}")
