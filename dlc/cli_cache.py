"""`dlc cache`: the llvm backend's compile cache on disk (backends/llvm/cache.py).

    dlc cache info      where it is, how many entries, how many bytes
    dlc cache clear     remove every entry
"""
from __future__ import annotations

import argparse

from dlc.cli import display_path, register

EPILOG = """\
the cache:
  Compiling a graph with backend="llvm" stores its optimized machine code, keyed by a
  SHA-256 of the IR text, the target CPU and features, the options (threads, optimization
  level), the dlc and LLVM versions and the compiler's source; compiling the same graph
  again, in any process, loads it instead. An entry that is truncated, corrupted or of
  another version is detected by its checksum and compiled again.

  Location: $DLC_CACHE_DIR, else $XDG_CACHE_HOME/dlc, else ~/.cache/dlc. DLC_CACHE=0 turns
  the cache off; DLC_CACHE_MAX_BYTES (default 1 GiB) bounds its size (least recently used
  entries go first).
"""


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("info", "clear"),
                   help="info: location, entries and bytes; clear: remove every entry")


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


@register("cache", "show or clear the llvm backend's compile cache", _configure,
          description="Show where the llvm backend's compile cache is and what it holds, "
                      "or remove every entry.", epilog=EPILOG)
def cmd_cache(args: argparse.Namespace) -> int:
    from backends.llvm import cache
    if args.action == "info":
        found = cache.info()
        if not found.enabled:
            print("compile cache: off (DLC_CACHE=0)")
            return 0
        print(f"location: {display_path(found.location)}")
        print(f"entries: {found.entries}")
        print(f"bytes: {found.bytes} ({_size(found.bytes)})")
        return 0
    removed = cache.clear()
    if not removed.enabled:
        print("compile cache: off (DLC_CACHE=0); nothing to clear")
        return 0
    print(f"removed {removed.entries} entries ({_size(removed.bytes)}) from "
          f"{display_path(removed.location)}")
    return 0
