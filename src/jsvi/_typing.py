"""Type aliases shared by every jsvi module, and the ``DistributionLike`` protocol.

Imports nothing from jsvi.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
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


def shape_of(x: Any) -> Shape:
    """The shape of an array-like (Python scalars have shape ``()``)."""
    return tuple(np.shape(x))
