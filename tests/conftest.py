"""Shared set-up: XLA's backend optimizations off, and the handler stack empty
around every test.

The suite compiles a few thousand small programs and runs most of them once or a
few times, so LLVM's optimization passes are most of its compile time and buy
nothing. ``JAX_DISABLE_MOST_OPTIMIZATIONS=1`` (a JAX option) turns them off for
this process and the subprocesses it starts (benchmark smoke runs, notebooks,
multi-process tests); set it to 0 to run the suite on fully optimized programs.
HLO-level passes (fusion, simplification) still run, and
``tests/test_optimized_build.py`` checks that fully optimized programs give the
same losses. Each test process also keeps a JAX compilation cache of its own
(``JSVI_TEST_COMPILATION_CACHE=0`` turns it off).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

if os.environ.get("JSVI_TEST_COMPILATION_CACHE", "1") == "1":
    # Many tests build the same small programs (the coin, a normal model, ...):
    # one JAX compilation cache per test process, set before anything compiles,
    # lets later tests load what earlier ones compiled. Per process, so no two
    # processes write one cache at once; removed when the process ends; not
    # passed on to the subprocesses tests start.
    _CACHE = tempfile.mkdtemp(prefix="jsvi-test-xla-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from jsvi.core.runtime import stack_is_empty


@pytest.fixture(autouse=True)
def _handler_stack_is_clean():
    assert stack_is_empty(), "a previous test left handlers on the stack"
    yield
    assert stack_is_empty(), "this test left handlers on the stack"


# Test files whose tests run scripts, notebooks or processes for tens of seconds
# each. They start first, so that with pytest-xdist the short tests fill in at the
# end and the workers finish together instead of one waiting on a long tail.
_LONG_FIRST = (
    "tests/test_benchmarks.py::test_suite_smoke",
    "tests/test_benchmarks.py",
    "tests/test_notebooks.py",
    "tests/test_examples.py",
    "tests/test_multiprocess.py",
    "tests/test_optimized_build.py",
)


def _rank(nodeid: str) -> int:
    return next(
        (i for i, prefix in enumerate(_LONG_FIRST) if nodeid.startswith(prefix)),
        len(_LONG_FIRST),
    )


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: file order otherwise
