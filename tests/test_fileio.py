"""Atomic writes: a finished file or the old one, never half of one; arrays without pickles."""
from __future__ import annotations

import os

import numpy as np
import pytest

from dlc.fileio import atomic_path, atomic_write_text, save_npy, save_npz


def test_arrays_round_trip_with_any_names(tmp_path, rng):
    arrays = {"file": rng.standard_normal((3, 4)), "fc1.weight": rng.standard_normal(5)
              .astype(np.float32), "step": np.array(7, np.int64)}
    save_npz(tmp_path / "w.npz", arrays)  # `file` would clash with np.savez's own argument
    with np.load(tmp_path / "w.npz", allow_pickle=False) as got:
        assert sorted(got.files) == sorted(arrays)
        for k, a in arrays.items():
            assert got[k].dtype == a.dtype
            np.testing.assert_array_equal(got[k], a)
    save_npy(tmp_path / "out", arrays["file"])  # exactly this name, no .npy appended
    np.testing.assert_array_equal(np.load(tmp_path / "out", allow_pickle=False),
                                  arrays["file"])
    assert sorted(os.listdir(tmp_path)) == ["out", "w.npz"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "graph.dlc"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="halfway"):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("halfway")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["graph.dlc"]


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        save_npz(tmp_path / "w.npz", {"x": np.array([{"a": 1}], dtype=object)})
    assert os.listdir(tmp_path) == []
