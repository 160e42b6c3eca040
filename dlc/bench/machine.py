"""What the numbers were measured on: CPU, cores, threads and package versions."""
from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("dlc", "numpy", "llvmlite", "torch", "triton", "jax", "jaxlib", "onnxruntime")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def describe(threads: int) -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "machine": platform.machine(), "python": platform.python_version(),
            "versions": versions()}
