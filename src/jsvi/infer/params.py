"""Parameters between constrained and unconstrained space, and the
``substitute_fn``s that feed them to ``param`` sites.

May import: ``jsvi.core``, ``jsvi.transforms``, ``jsvi._typing``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import PyTree
from jsvi.core.runtime import Message
from jsvi.transforms import biject_to

__all__ = [
    "ParamFn",
    "constrain",
    "constrained_param_fn",
    "unconstrain",
    "unconstrained_param_fn",
]

ParamFn = Callable[[Message], Any]

# ---------------------------------------------------------------------------
# parameters: constrained <-> unconstrained


def constrain(value_u: PyTree, constraint: Any) -> PyTree:
    """Map an unconstrained param (array or pytree of arrays) into ``constraint``."""
    transform = biject_to(constraint)
    return jax.tree.map(transform, value_u)


def unconstrain(value: PyTree, constraint: Any) -> PyTree:
    """Map a constrained param value to unconstrained space."""
    transform = biject_to(constraint)
    return jax.tree.map(lambda v: transform.inv(jnp.asarray(v, dtype=_float_dtype(v))), value)


def _float_dtype(v: Any) -> Any:
    dtype = jnp.result_type(v)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def unconstrained_param_fn(params_u: Mapping[str, PyTree]) -> ParamFn:
    """A ``substitute_fn`` that reads params from unconstrained values."""

    def fn(msg: Message) -> Any:
        # A param declared without init or constraint reads its earlier
        # declaration's value (see ``jsvi.param``).
        if msg.kind == "param" and msg.name in params_u and msg.constraint is not None:
            return constrain(params_u[msg.name], msg.constraint)
        return None

    return fn


def constrained_param_fn(params: Mapping[str, PyTree]) -> ParamFn:
    """A ``substitute_fn`` that reads params from constrained values."""

    def fn(msg: Message) -> Any:
        if msg.kind == "param":
            return params.get(msg.name)
        return None

    return fn
