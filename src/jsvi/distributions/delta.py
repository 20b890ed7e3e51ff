"""``Delta``: a point mass, with an optional log-density at the point.

Used for guides that put all their mass on a learned value (MAP estimation) and
for deterministic sites that must still appear in a trace.

May import (within jsvi): ``jsvi.distributions._base``, ``jsvi.constraints``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import as_shape, float_dtype
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["Delta"]


class Delta(Distribution):
    """A point mass at ``v`` with density ``exp(log_density)`` there.

    Args:
        v: the location, shape ``batch_shape + event_shape`` where the event has
            ``event_dim`` dims.
        log_density: log-density at ``v``, shape broadcastable to ``batch_shape``.
        event_dim: number of rightmost dims of ``v`` forming one event.

    ``log_prob(x)`` is ``log_density`` where ``x == v`` (over the whole event) and
    ``-inf`` elsewhere. Samples equal ``v``, with gradients flowing to ``v``.
    """

    has_rsample = True
    _pytree_data_fields = ("v", "log_density")

    def __init__(
        self,
        v: ArrayLike = 0.0,
        log_density: ArrayLike = 0.0,
        event_dim: int = 0,
        *,
        validate_args: bool | None = None,
    ):
        dtype = float_dtype(v, log_density)
        self.v = jnp.asarray(v, dtype=dtype)
        if not isinstance(event_dim, int) or not 0 <= event_dim <= self.v.ndim:
            raise ArgumentError(
                f"Delta: event_dim must be an int in [0, {self.v.ndim}] for v of shape "
                f"{self.v.shape}, got {event_dim!r}. Pass at most v.ndim."
            )
        log_density = jnp.asarray(log_density, dtype=dtype)
        v_batch = self.v.shape[: self.v.ndim - event_dim]
        try:
            batch = tuple(jnp.broadcast_shapes(v_batch, log_density.shape))
        except ValueError:
            raise ShapeError(
                f"Delta: log_density of shape {log_density.shape} does not broadcast "
                f"with the batch shape {v_batch} of v. Give log_density the batch "
                "shape (or a scalar)."
            ) from None
        self.v = jnp.broadcast_to(self.v, batch + self.v.shape[len(v_batch) :])
        self.log_density = jnp.broadcast_to(log_density, batch)
        self._event_dim = event_dim
        super().__init__(validate_args=validate_args)

    @property
    def arg_constraints(self) -> Mapping[str, Constraint]:  # type: ignore[override]
        return {
            "v": constraints.independent(constraints.real, self._event_dim),
            "log_density": constraints.real,
        }

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.independent(constraints.real, self._event_dim)

    @property
    def event_shape(self) -> Shape:
        shape = jnp.shape(self.v)
        return tuple(shape[len(shape) - self._event_dim :])

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        del key
        return jnp.broadcast_to(self.v, self.shape(as_shape(sample_shape)))

    def _log_prob(self, value: ArrayLike) -> Array:
        value = jnp.asarray(value)
        n = self._event_dim
        same = value == self.v
        if n:
            same = jnp.all(same, axis=tuple(range(-n, 0)))
        return jnp.where(same, self.log_density, -jnp.inf)

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.v, self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Array:
        return jnp.zeros(self.batch_shape + self.event_shape, dtype=self.v.dtype)
