"""Shared fixtures: the handler stack must be empty around every test.

The suite is dominated by XLA compile time, not by running the programs it
compiles: tests compile without LLVM optimization (the same programs, generated
with less work; their results do not depend on it). Benchmarks, not tests,
measure speed. Subprocesses started by tests inherit the setting.
"""

from __future__ import annotations

import os

_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE).strip()

import pytest  # noqa: E402

from jsvi.core.runtime import stack_is_empty  # noqa: E402


@pytest.fixture(autouse=True)
def _handler_stack_is_clean():
    assert stack_is_empty(), "a previous test left handlers on the stack"
    yield
    assert stack_is_empty(), "this test left handlers on the stack"
