"""The triton backend's tests run its kernels in Triton's interpreter on the CPU.

TRITON_INTERPRET=1 is set here, before any test module imports triton; kernels then run
on torch CPU tensors. Generated modules go to a temporary cache dir of the session."""
import os

os.environ["TRITON_INTERPRET"] = "1"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is unset

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def triton_cache_dir(tmp_path_factory):
    """Generated kernel modules of this session: a fresh directory, not the user's cache."""
    path = tmp_path_factory.mktemp("dlc-triton-cache")
    saved = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("DLC_CACHE_DIR", None)
    else:
        os.environ["DLC_CACHE_DIR"] = saved
