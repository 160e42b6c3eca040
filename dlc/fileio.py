"""Atomic writes of the files dlc produces (dumps, weights, outputs, reports).

Each file is written to a temporary name in the same folder and renamed over the target, so
a reader (or a crash halfway) never sees half a file, and an old file stays whole until the
new one is complete. Arrays are written without pickles.
"""
from __future__ import annotations

import contextlib
import os
import uuid
import zipfile
from typing import Iterator

import numpy as np

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """A temporary path next to `path` to write to; renamed over `path` when the block
    ends without an error, removed when it raises."""
    folder, base = os.path.split(os.path.abspath(path))
    # a fresh name, created here so that it takes the umask's mode (mkstemp's is 0600)
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex[:12]}-{base}")
    open(tmp, "x").close()
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """One array as .npy at exactly `path` (np.save would append .npy to other names)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


def save_npz(path: PathLike, arrays: dict[str, np.ndarray]) -> None:
    """An .npz archive (what np.load reads) with any names: np.savez takes them as keyword
    arguments, which an array named `file` would clash with."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
