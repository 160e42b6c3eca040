"""`dlc dump MODEL --kernels`: the generated Triton source of every kernel of a graph.

Each kernel comes with its header comment (kernel and group name, ops, the user's
file:line), in launch order, as `kernel_sources` returns them. The math helpers the kernels
call (`dlc_helpers`) are long and the same for every graph, so the listing names them and
`write_kernels` puts them, with every kernel and the whole importable module, in a folder.
"""
from __future__ import annotations

import os

from dlc.fileio import atomic_write_text
from dlc.ir.graph import Graph
from backends.triton import kernel_sources, module_source

HELPERS = "dlc_helpers"
MODULE_FILE = "module.py"


def kernel_listing(graph: Graph, **options) -> str:
    """Every kernel's source, headed by one line that counts them."""
    sources = kernel_sources(graph, **options)
    kernels = [text.rstrip() for name, text in sources.items() if name != HELPERS]
    head = (f"# {len(kernels)} triton kernels of @{graph.name}, in launch order\n"
            f"# the math helpers they call (dlc_*): {HELPERS}, written by --all DIR")
    return "\n\n\n".join([head] + kernels) + "\n"


def write_kernels(graph: Graph, directory: str, **options) -> list[str]:
    """Write NAME.py for every kernel and for the helpers, and module.py (the whole module
    the backend imports) into directory; return the paths written, in launch order."""
    os.makedirs(directory, exist_ok=True)
    files = {f"{name}.py": text for name, text in kernel_sources(graph, **options).items()}
    files[MODULE_FILE] = module_source(graph, **options)
    paths = []
    for file_name, text in files.items():
        path = os.path.join(directory, file_name)
        atomic_write_text(path, text if text.endswith("\n") else text + "\n")
        paths.append(path)
    return paths

