"""Shared fixtures: the handler stack must be empty around every test."""

from __future__ import annotations

import pytest

from jsvi.core.runtime import stack_is_empty


@pytest.fixture(autouse=True)
def _handler_stack_is_clean():
    assert stack_is_empty(), "a previous test left handlers on the stack"
    yield
    assert stack_is_empty(), "this test left handlers on the stack"
