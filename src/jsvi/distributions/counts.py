"""Count families: Geometric, DiscreteUniform, Multinomial, BetaBinomial and
DirichletMultinomial.

As in ``discrete``: samples are integer arrays (the default int dtype) without
gradients, ``log_prob`` takes integer or integral float values and broadcasts them
against the batch shape, and finite supports can be enumerated when their bounds
are one concrete integer shared by the whole batch.

May import (within jsvi): ``jsvi.distributions._base``,
``jsvi.distributions.discrete``, ``jsvi.distributions.continuous``,
``jsvi.constraints``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape, is_concrete
from jsvi.constraints import Constraint
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import float_dtype, int_dtype, promote_params
from jsvi.distributions.continuous import log_beta
from jsvi.distributions.discrete import _enumerate, _logit, _one_of, _softplus
from jsvi.errors import ArgumentError, ShapeError

__all__ = [
    "BetaBinomial",
    "DirichletMultinomial",
    "DiscreteUniform",
    "Geometric",
    "Multinomial",
]

_INTEGER = constraints.integer_greater_than(-np.inf)


def _as_float(value: ArrayLike, param: Array) -> Array:
    return jnp.asarray(value, dtype=float_dtype(value, param))


def _static_int(value: Any) -> int | None:
    """A Python integer (kept static when traced), else None."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    return None


def _shared_int(where: str, name: str, static: int | None, value: Array) -> int:
    """One concrete integer shared by the whole batch, for ``enumerate_support``."""
    if static is not None:
        return static
    if is_concrete(value):
        unique = np.unique(np.asarray(value))
        if unique.size == 1:
            return int(unique[0])
    raise ArgumentError(
        f"{where}.enumerate_support: {name} must be one concrete integer shared by "
        f"the whole batch (got a traced or varying array). Pass {name} as a Python "
        "int."
    )


class Geometric(Distribution):
    """Number of failures before the first success, given the success ``probs``
    (or ``logits``) of each trial."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.nonnegative_integer
    _pytree_data_fields = ("_probs", "_logits")

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        _one_of("Geometric", probs, logits)
        if probs is not None:
            (self._probs,) = promote_params("Geometric", probs=probs)
        else:
            (self._logits,) = promote_params("Geometric", logits=logits)
        super().__init__(validate_args=validate_args)

    @property
    def probs(self) -> Array:
        """Success probability per trial, shape ``batch_shape``."""
        p = self.__dict__.get("_probs")
        return jax.nn.sigmoid(self._logits) if p is None else p

    @property
    def logits(self) -> Array:
        """Log-odds of success per trial, shape ``batch_shape``."""
        logits = self.__dict__.get("_logits")
        return _logit(self._probs) if logits is None else logits

    def _log_q(self) -> Array:
        """``log(1 - probs)``."""
        logits = self.__dict__.get("_logits")
        return jnp.log1p(-self._probs) if logits is None else -_softplus(logits)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        log_q = jax.lax.stop_gradient(self._log_q())
        dtype = log_q.dtype
        u = jax.random.uniform(
            key, self.shape(sample_shape), dtype=dtype, minval=jnp.finfo(dtype).tiny
        )
        k = jnp.floor(jnp.log(u) / log_q)
        return jnp.clip(k, 0, jnp.iinfo(int_dtype()).max).astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        logits = self.__dict__.get("_logits")
        param = self._probs if logits is None else logits
        k = _as_float(value, param)
        if logits is not None:
            return -k * _softplus(logits) - _softplus(-logits)
        p = self._probs
        return special.xlog1py(k, -p) + jnp.log(p)

    @property
    def mean(self) -> Array:
        p = self.probs
        return (1 - p) / p

    @property
    def variance(self) -> Array:
        p = self.probs
        return (1 - p) / jnp.square(p)


class DiscreteUniform(Distribution):
    """Uniform distribution over the integers ``low, low + 1, ..., high``."""

    has_enumerate_support = True
    _pytree_data_fields = ("low", "high")

    def __init__(
        self,
        low: ArrayLike = 0,
        high: ArrayLike = 1,
        *,
        validate_args: bool | None = None,
    ):
        self._low_static, self._high_static = _static_int(low), _static_int(high)
        self.low, self.high = promote_params("DiscreteUniform", low=low, high=high)
        super().__init__(validate_args=validate_args)

    @property
    def arg_constraints(self) -> Mapping[str, Constraint]:  # type: ignore[override]
        return {"low": _INTEGER, "high": constraints.integer_greater_than(self.low)}

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        low = self.low if self._low_static is None else self._low_static
        high = self.high if self._high_static is None else self._high_static
        return constraints.integer_interval(low, high)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        low, high = jax.lax.stop_gradient((self.low, self.high))
        u = jax.random.uniform(key, self.shape(sample_shape), dtype=low.dtype)
        x = jnp.minimum(low + jnp.floor(u * (high - low + 1)), high)
        return x.astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        shape = jnp.broadcast_shapes(jnp.shape(value), self.batch_shape)
        return jnp.broadcast_to(-jnp.log(self.high - self.low + 1), shape)

    @property
    def mean(self) -> Array:
        return (self.low + self.high) / 2

    @property
    def variance(self) -> Array:
        return (jnp.square(self.high - self.low + 1) - 1) / 12

    def enumerate_support(self, expand: bool = True) -> Array:
        low = _shared_int("DiscreteUniform", "low", self._low_static, self.low)
        high = _shared_int("DiscreteUniform", "high", self._high_static, self.high)
        values = jnp.arange(low, high + 1, dtype=int_dtype())
        return _enumerate(values, self.batch_shape, (), expand)


def _vector_params(
    where: str, count_name: str, count: Any, name: str, vector: Any
) -> tuple[Array, Array]:
    """A per-batch count and a vector parameter (``(..., K)``), one float dtype,
    both broadcast to their common batch shape."""
    dtype = float_dtype(count, vector)
    count = jnp.asarray(count, dtype=dtype)
    vector = jnp.asarray(vector, dtype=dtype)
    if vector.ndim < 1:
        raise ShapeError(
            f"{where}: {name} must have at least one dim (the categories), got shape "
            f"{vector.shape}. Pass a vector with one entry per category."
        )
    try:
        batch = jnp.broadcast_shapes(count.shape, vector.shape[:-1])
    except ValueError:
        raise ShapeError(
            f"{where}: {count_name} of shape {count.shape} does not broadcast with the "
            f"batch shape {vector.shape[:-1]} of {name}. Give them compatible shapes."
        ) from None
    return (
        jnp.broadcast_to(count, batch),
        jnp.broadcast_to(vector, batch + vector.shape[-1:]),
    )


_ONE_HOT_MAX_COUNT = 64


def _multinomial_counts(
    key: PRNGKey, n: Array, probs: Array, shape: Shape, static_n: int | None = None
) -> Array:
    """Counts of ``n`` categorical draws. A small count known in Python draws the
    ``n`` categories at once and sums their one-hot vectors (one vectorized draw);
    otherwise ``jax.random.multinomial`` (a scan of one binomial per category)."""
    n, probs = jax.lax.stop_gradient((n, probs))
    if static_n is not None and static_n <= _ONE_HOT_MAX_COUNT:
        k = shape[-1]
        # Each trial: one uniform against the cumulative probabilities.
        cdf = jnp.cumsum(jnp.broadcast_to(probs, shape), axis=-1)[..., :-1]
        u = jax.random.uniform(key, (static_n,) + shape[:-1], dtype=probs.dtype)
        index = jnp.sum(u[..., None] >= cdf, axis=-1)
        counts = jnp.sum(jax.nn.one_hot(index, k, dtype=int_dtype()), axis=0)
        return counts.reshape(shape)
    draws = jax.random.multinomial(key, n, probs, shape=shape, dtype=probs.dtype)
    return draws.astype(int_dtype())


def _log_multinomial_coefficient(n: Array, x: Array) -> Array:
    return special.gammaln(n + 1) - jnp.sum(special.gammaln(x + 1), axis=-1)


class Multinomial(Distribution):
    """Counts of ``total_count`` draws over ``K`` categories (``K = probs.shape[-1]``)."""

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    _pytree_data_fields = ("total_count", "_probs", "_logits")

    def __init__(
        self,
        total_count: ArrayLike = 1,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        _one_of("Multinomial", probs, logits)
        self._total_count_static = _static_int(total_count)
        name, vector = ("probs", probs) if probs is not None else ("logits", logits)
        self.total_count, param = _vector_params(
            "Multinomial", "total_count", total_count, name, vector
        )
        setattr(self, "_" + name, param)
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return tuple(
            self._param("probs" if "_probs" in self.__dict__ else "logits").shape[-1:]
        )

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        n = self._total_count_static
        return constraints.multinomial(self.total_count if n is None else n)

    @property
    def probs(self) -> Array:
        """Category probabilities, shape ``batch_shape + (K,)``."""
        p = self.__dict__.get("_probs")
        return jax.nn.softmax(self._logits, axis=-1) if p is None else p

    @property
    def logits(self) -> Array:
        """Normalized log-probabilities, shape ``batch_shape + (K,)``."""
        logits = self.__dict__.get("_logits")
        return (
            jnp.log(self._probs) if logits is None else jax.nn.log_softmax(logits, -1)
        )

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        return _multinomial_counts(
            key,
            self.total_count,
            self.probs,
            self.shape(sample_shape),
            self._total_count_static,
        )

    def _log_prob(self, value: ArrayLike) -> Array:
        x = _as_float(value, self.total_count)
        coef = _log_multinomial_coefficient(self.total_count, x)
        logits = self.__dict__.get("_logits")
        if logits is None:
            return coef + jnp.sum(special.xlogy(x, self._probs), axis=-1)
        return coef + jnp.sum(x * jax.nn.log_softmax(logits, axis=-1), axis=-1)

    @property
    def mean(self) -> Array:
        return self.total_count[..., None] * self.probs

    @property
    def variance(self) -> Array:
        p = self.probs
        return self.total_count[..., None] * p * (1 - p)


class BetaBinomial(Distribution):
    """Binomial counts of ``total_count`` trials whose success probability is
    ``Beta(concentration1, concentration0)`` distributed."""

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "total_count": constraints.nonnegative_integer,
    }
    has_enumerate_support = True
    _pytree_data_fields = ("concentration1", "concentration0", "total_count")

    def __init__(
        self,
        concentration1: ArrayLike,
        concentration0: ArrayLike,
        total_count: ArrayLike = 1,
        *,
        validate_args: bool | None = None,
    ):
        self._total_count_static = _static_int(total_count)
        self.concentration1, self.concentration0, self.total_count = promote_params(
            "BetaBinomial",
            concentration1=concentration1,
            concentration0=concentration0,
            total_count=total_count,
        )
        super().__init__(validate_args=validate_args)

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        n = self._total_count_static
        return constraints.integer_interval(0, self.total_count if n is None else n)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        a, b, n = jax.lax.stop_gradient(
            (self.concentration1, self.concentration0, self.total_count)
        )
        key_p, key_k = jax.random.split(key)
        shape = self.shape(sample_shape)
        p = jax.random.beta(key_p, a, b, shape, dtype=a.dtype)
        return jax.random.binomial(key_k, n, p, shape).astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        a, b, n = self.concentration1, self.concentration0, self.total_count
        k = _as_float(value, a)
        log_comb = (
            special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
        )
        return log_comb + log_beta(k + a, n - k + b) - log_beta(a, b)

    @property
    def mean(self) -> Array:
        a, b = self.concentration1, self.concentration0
        return self.total_count * a / (a + b)

    @property
    def variance(self) -> Array:
        a, b, n = self.concentration1, self.concentration0, self.total_count
        total = a + b
        return n * a * b * (total + n) / (jnp.square(total) * (total + 1))

    def enumerate_support(self, expand: bool = True) -> Array:
        n = _shared_int(
            "BetaBinomial", "total_count", self._total_count_static, self.total_count
        )
        values = jnp.arange(n + 1, dtype=int_dtype())
        return _enumerate(values, self.batch_shape, (), expand)


class DirichletMultinomial(Distribution):
    """Multinomial counts of ``total_count`` draws whose category probabilities
    are ``Dirichlet(concentration)`` distributed."""

    arg_constraints = {
        "concentration": constraints.independent(constraints.positive, 1),
        "total_count": constraints.nonnegative_integer,
    }
    _pytree_data_fields = ("concentration", "total_count")

    def __init__(
        self,
        concentration: ArrayLike,
        total_count: ArrayLike = 1,
        *,
        validate_args: bool | None = None,
    ):
        self._total_count_static = _static_int(total_count)
        self.total_count, self.concentration = _vector_params(
            "DirichletMultinomial",
            "total_count",
            total_count,
            "concentration",
            concentration,
        )
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return tuple(self.concentration.shape[-1:])

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        n = self._total_count_static
        return constraints.multinomial(self.total_count if n is None else n)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        alpha = jax.lax.stop_gradient(self.concentration)
        key_p, key_x = jax.random.split(key)
        shape = self.shape(sample_shape)
        probs = jax.random.dirichlet(key_p, alpha, shape[:-1], dtype=alpha.dtype)
        return _multinomial_counts(
            key_x, self.total_count, probs, shape, self._total_count_static
        )

    def _log_prob(self, value: ArrayLike) -> Array:
        alpha, n = self.concentration, self.total_count
        x = _as_float(value, alpha)
        alpha_0 = jnp.sum(alpha, axis=-1)
        return (
            _log_multinomial_coefficient(n, x)
            + special.gammaln(alpha_0)
            - special.gammaln(n + alpha_0)
            + jnp.sum(special.gammaln(x + alpha) - special.gammaln(alpha), axis=-1)
        )

    @property
    def mean(self) -> Array:
        alpha = self.concentration
        return self.total_count[..., None] * alpha / jnp.sum(alpha, -1, keepdims=True)

    @property
    def variance(self) -> Array:
        alpha, n = self.concentration, self.total_count[..., None]
        alpha_0 = jnp.sum(alpha, -1, keepdims=True)
        p = alpha / alpha_0
        return n * p * (1 - p) * (n + alpha_0) / (1 + alpha_0)
