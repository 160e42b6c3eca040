"""Generated source as a module file in the cache directory, imported like any module.

The file name carries a hash of the source (and of the target: interpreter or GPU), so an
unchanged graph reuses its file, and a traceback or a Triton compile error points at a real
file a user can open. Written atomically (temporary file, then rename), never exec'd.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
from types import ModuleType

from backends.triton.codegen.common import identifier

MODULE_PREFIX = "dlc_triton_"


def module_path(cache_dir: str, name: str, source: str, target: str) -> str:
    digest = hashlib.sha256(f"{target}\n{source}".encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{MODULE_PREFIX}{identifier(name)}_{digest}.py")


def write_module(cache_dir: str, name: str, source: str, target: str) -> str:
    """Write source to the cache directory (if not there yet); return the file's path."""
    path = module_path(cache_dir, name, source, target)
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def jit_mode(interpret: bool):
    """triton.jit makes interpreted or compiled functions when a module is imported (it
    reads triton.knobs.runtime.interpret then): set it for one import, then restore it."""
    import triton
    saved = triton.knobs.runtime.interpret
    triton.knobs.runtime.interpret = interpret
    try:
        yield
    finally:
        triton.knobs.runtime.interpret = saved


def import_module(path: str) -> ModuleType:
    """Import the module file at path (once per process)."""
    name = os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource (used by triton.jit) looks it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
