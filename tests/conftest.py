"""Suite-wide test settings: torch and the BLAS libraries compute on one thread.

Two spinning threads on this 2-core box, while any other job holds a core, made the compression
tests (tensorly SVDs through numpy's OpenBLAS, torch convs) 10-40x slower: 12-60 s instead of
~1.5 s for test_compress_api's determinism test. Results do not depend on the count, only the time.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """numpy's and scipy's OpenBLAS take OMP_NUM_THREADS (2, from the Makefile) when they load."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only a speed setting: without it the tests still run
        return
    threadpool_limits(limits=1, user_api="blas")  # per module: also reaches a library loaded since


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts with torch on one intra-op thread, as most test modules set at import:
    code under test sets the count for the rest of the process (a recipe's `threads`, a device
    profile's `threads: 2` for the torch runner, `edgeskel bench`), so a test otherwise ran on
    whatever count an earlier test left."""
    torch.set_num_threads(1)
