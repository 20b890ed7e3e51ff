"""Type aliases shared by every jsvi module, and the ``DistributionLike`` protocol.

Imports nothing from jsvi.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
PyTree = Any
Params = dict[str, PyTree]
Shape = tuple[int, ...]
ModelFn = Callable[..., Any]


@runtime_checkable
class DistributionLike(Protocol):
    """What the effect-handler core needs from a distribution.

    ``core`` never imports ``jsvi.distributions``; anything with these members can be
    used at a sample site. Plates expand a site with its ``_expand_lazily(batch_shape)``
    method when it has one (jsvi distributions do: it broadcasts log-densities
    rather than parameters), and with ``expand`` otherwise.
    """

    @property
    def batch_shape(self) -> Shape: ...

    @property
    def event_shape(self) -> Shape: ...

    @property
    def has_rsample(self) -> bool: ...

    def sample(self, key: PRNGKey, sample_shape: Shape = ()) -> Array: ...

    def log_prob(self, value: ArrayLike) -> Array: ...

    def expand(self, batch_shape: Shape) -> DistributionLike: ...


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds concrete values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def same_array_value(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` hold the same concrete values (same shape, equal
    entries; False for tracers and for values that are not array-like). Used by
    the ``==`` of objects that carry array fields (constraints, transforms)."""
    if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
        return False
    try:
        a_np, b_np = np.asarray(a), np.asarray(b)
    except (TypeError, ValueError):
        return False
    return a_np.shape == b_np.shape and bool(np.array_equal(a_np, b_np))


def all_true(x: ArrayLike) -> Array:
    """``jnp.all(x)``: a boolean scalar, True for an empty ``x``.

    Reduced as bytes (``uint8``): XLA's CPU compiler builds a large reduction of
    bytes much faster than one of booleans, and the checks of ``svi_init`` and
    ``svi_update`` reduce whole observed arrays, whose compile time the user
    waits for.
    """
    x = jnp.asarray(x)
    if x.size == 0:
        return jnp.ones((), bool)
    return jnp.min(x.astype(bool).astype(jnp.uint8)) > 0


def shape_of(x: Any) -> Shape:
    """The shape of an array-like (Python scalars have shape ``()``)."""
    return tuple(np.shape(x))
