import os
import sys

# The tests run many small matrix products: BLAS threads cost more in start-up and
# contention than they gain, and on a shared machine they can slow the suite manyfold.
# Set before numpy loads its BLAS (the Makefile sets it for the whole process too).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def rng(request):
    """Fresh random inputs each run; the seed is printed on failure, and DLC_TEST_SEED=N
    replays it."""
    fixed = os.environ.get("DLC_TEST_SEED")
    seed = int(fixed) if fixed else int.from_bytes(os.urandom(4), "little")
    request.node.user_properties.append(("seed", seed))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)
