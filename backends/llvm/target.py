"""Which CPU the llvm backend compiles for: the host (JIT and the compile cache) or a CPU
named with `--target-cpu` (ahead-of-time bundles).

LLVM has no query for its CPU names; asked for the CPU "help" it prints them on stderr,
which is how `cpu_names` learns them. A name LLVM does not know is refused with that list
(LLVM itself would only print a warning and compile for a generic CPU).
"""
from __future__ import annotations

import functools
import os
import tempfile
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

from dlc.errors import DlcError
from backends.llvm.jit import host_cpu

HOST_ALIASES = ("host", "native")
GENERIC = "x86-64"
_STDERR_LOCK = threading.Lock()


class TargetError(DlcError):
    """An unknown --target-cpu name; the message lists the valid ones."""


@dataclass(frozen=True)
class Target:
    """What code is compiled for: the triple, the CPU name and its feature string
    ('' means the CPU's own defaults)."""
    triple: str
    cpu: str
    features: str

    def describe(self) -> dict:
        return {"triple": self.triple, "cpu": self.cpu, "features": self.features}


def host_target() -> Target:
    """This machine: its CPU name and every feature it has."""
    name, features = host_cpu()
    return Target(llvm.get_process_triple(), name, features)


def _llvm_stderr(action) -> str:
    """Run `action()` and return what LLVM printed on the process's stderr meanwhile."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            action()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return sink.read().decode(errors="replace")


@functools.lru_cache(maxsize=None)
def cpu_names(triple: str | None = None) -> tuple[str, ...]:
    """The CPU names LLVM accepts for `triple` (default: this process's)."""
    host_cpu()  # initializes the native target
    target = llvm.Target.from_triple(triple or llvm.get_process_triple())
    text = _llvm_stderr(lambda: target.create_target_machine(cpu="help"))
    names, listing = [], False
    for line in text.splitlines():
        if line.startswith("Available CPUs"):
            listing = True
        elif line.startswith("Available features"):
            break
        elif listing and line.strip():
            names.append(line.split()[0])
    return tuple(names)


def resolve_target(cpu: str | None = None) -> Target:
    """The Target for a --target-cpu name: None, 'host' or 'native' is this machine (with
    all its features); any other name must be a CPU LLVM knows (its default features)."""
    host = host_target()
    if cpu is None or cpu in HOST_ALIASES or cpu == host.cpu:
        return host
    names = cpu_names(host.triple)
    if cpu not in names:
        raise TargetError(f"unknown target CPU {cpu!r} for {host.triple}; valid names: "
                          f"{', '.join(HOST_ALIASES)} (this machine, {host.cpu}), "
                          f"{GENERIC} (any x86-64), {', '.join(names)}")
    return Target(host.triple, cpu, "")


def aot_target_machine(target: Target):
    """A target machine for position-independent code that a shared library can hold."""
    host_cpu()
    return llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu, features=target.features, opt=3, reloc="pic", codemodel="default")


def runs_here(target: Target) -> list[str]:
    """Features `target` was compiled with that this machine lacks (empty: it can run)."""
    if not target.features:
        return []
    have = {f[1:] for f in host_target().features.split(",") if f.startswith("+")}
    return sorted(f[1:] for f in target.features.split(",")
                  if f.startswith("+") and f[1:] not in have)
