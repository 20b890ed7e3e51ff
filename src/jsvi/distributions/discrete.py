"""Discrete families: Bernoulli, Binomial, Categorical, OneHotCategorical, Poisson.

Samples are integer arrays (the default int dtype) and carry no gradient
(``has_rsample=False``). ``log_prob`` accepts integer or integral float values and
broadcasts them against the batch shape, so values from
``enumerate_support(expand=False)`` work directly. The support check (under
validation) rejects non-integral and out-of-range values.

May import (within jsvi): ``jsvi.distributions._base``, ``jsvi.constraints``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["Bernoulli", "Binomial", "Categorical", "OneHotCategorical", "Poisson"]



@jax.custom_jvp
def _softplus(x: Array) -> Array:
    """log(1 + exp(x)), stable, in the fewest elementwise ops (hot in likelihoods).

    Its derivative, sigmoid(x), is given from ``x`` alone. Left to autodiff, the
    backward pass would reuse the forward's ``exp(-|x|)``, so XLA keeps that whole
    array in memory between the passes; from ``x`` each pass fuses its own
    transcendental into one loop, which matters most with many particles
    (``benchmarks/particles.py``).
    """
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@_softplus.defjvp
def _softplus_jvp(primals: tuple, tangents: tuple) -> tuple[Array, Array]:
    (x,), (t,) = primals, tangents
    return _softplus(x), jax.nn.sigmoid(x) * t

def _one_of(where: str, probs: Any, logits: Any) -> None:
    if (probs is None) == (logits is None):
        raise ArgumentError(
            f"{where}: exactly one of probs and logits must be given, got "
            f"{'both' if probs is not None else 'neither'}. Pass probs=... or "
            "logits=..., not both."
        )


def _logit(p: Array) -> Array:
    return jnp.log(p) - jnp.log1p(-p)


def _enumerate(values: Array, batch_shape: Shape, event_shape: Shape, expand: bool):
    """Reshape ``values`` (``(n,) + event``) to ``(n,) + batch(or ones) + event``."""
    n = values.shape[0]
    values = values.reshape((n,) + (1,) * len(batch_shape) + event_shape)
    if expand:
        values = jnp.broadcast_to(values, (n,) + batch_shape + event_shape)
    return values


class Bernoulli(Distribution):
    """Bernoulli distribution over ``{0, 1}``, given ``probs`` or ``logits``.

    Example:
        >>> import jax.numpy as jnp
        >>> d = Bernoulli(probs=jnp.array([0.2, 0.7]))
        >>> values = d.enumerate_support(expand=False)
        >>> values.shape, d.log_prob(values).shape
        ((2, 1), (2, 2))
    """

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.boolean
    has_enumerate_support = True
    _pytree_data_fields = ("_probs", "_logits")

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        _one_of("Bernoulli", probs, logits)
        if probs is not None:
            (self._probs,) = promote_params("Bernoulli", probs=probs)
        else:
            (self._logits,) = promote_params("Bernoulli", logits=logits)
        super().__init__(validate_args=validate_args)

    @property
    def probs(self) -> Array:
        """Probability of 1, shape ``batch_shape``."""
        p = self.__dict__.get("_probs")
        return jax.nn.sigmoid(self._logits) if p is None else p

    @property
    def logits(self) -> Array:
        """Log-odds of 1, shape ``batch_shape``."""
        logits = self.__dict__.get("_logits")
        return _logit(self._probs) if logits is None else logits

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        draws = jax.random.bernoulli(key, self.probs, self.shape(sample_shape))
        return draws.astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        logits = self.__dict__.get("_logits")
        param = self._probs if logits is None else logits
        # Float values: integer ones would give float0 tangents inside xlogy's jvp.
        value = jnp.asarray(value, dtype=float_dtype(value, param))
        if logits is not None:
            return value * logits - _softplus(logits)
        p = self._probs
        return special.xlogy(value, p) + special.xlog1py(1 - value, -p)

    @property
    def mean(self) -> Array:
        return self.probs

    @property
    def variance(self) -> Array:
        p = self.probs
        return p * (1 - p)

    def enumerate_support(self, expand: bool = True) -> Array:
        values = jnp.arange(2, dtype=int_dtype())
        return _enumerate(values, self.batch_shape, (), expand)


class Binomial(Distribution):
    """Number of successes in ``total_count`` Bernoulli trials."""

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    has_enumerate_support = True
    _pytree_data_fields = ("total_count", "_probs", "_logits")

    def __init__(
        self,
        total_count: ArrayLike = 1,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        _one_of("Binomial", probs, logits)
        # A Python integer count stays known when traced (for enumerate_support).
        static = None
        if isinstance(total_count, int | np.integer) and not isinstance(
            total_count, bool
        ):
            static = int(total_count)
        self._total_count_static = static
        if probs is not None:
            self.total_count, self._probs = promote_params(
                "Binomial", total_count=total_count, probs=probs
            )
        else:
            self.total_count, self._logits = promote_params(
                "Binomial", total_count=total_count, logits=logits
            )
        super().__init__(validate_args=validate_args)

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        upper = self._total_count_static
        return constraints.integer_interval(
            0, self.total_count if upper is None else upper
        )

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

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        shape = self.shape(sample_shape)
        draws = jax.random.binomial(key, self.total_count, self.probs, shape)
        return draws.astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        k = jnp.asarray(value, dtype=float_dtype(value, self.total_count))
        n = self.total_count
        log_comb = (
            special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
        )
        logits = self.__dict__.get("_logits")
        if logits is not None:
            return log_comb + k * logits - n * _softplus(logits)
        p = self._probs
        return log_comb + special.xlogy(k, p) + special.xlog1py(n - k, -p)

    @property
    def mean(self) -> Array:
        return self.total_count * self.probs

    @property
    def variance(self) -> Array:
        p = self.probs
        return self.total_count * p * (1 - p)

    def enumerate_support(self, expand: bool = True) -> Array:
        n = self._total_count_static
        if n is None:
            count = self.total_count
            if is_concrete(count):
                unique = np.unique(np.asarray(count))
                if unique.size == 1:
                    n = int(unique[0])
            if n is None:
                raise ArgumentError(
                    "Binomial.enumerate_support: total_count must be one concrete "
                    "integer shared by the whole batch (got a traced or varying "
                    "array). Pass total_count as a Python int."
                )
        values = jnp.arange(n + 1, dtype=int_dtype())
        return _enumerate(values, self.batch_shape, (), expand)


def _categorical_params(where: str, probs: Any, logits: Any) -> tuple[str, Array]:
    _one_of(where, probs, logits)
    name, value = ("probs", probs) if probs is not None else ("logits", logits)
    arr = jnp.asarray(value, dtype=float_dtype(value))
    if arr.ndim < 1:
        raise ShapeError(
            f"{where}: {name} must have at least one dim (the categories), got shape "
            f"{arr.shape}. Pass a vector with one entry per category."
        )
    return name, arr


def _gather(log_p: Array, index: Array) -> Array:
    """``log_p[..., index]`` with ``index`` broadcast against the batch dims."""
    batch = jnp.broadcast_shapes(index.shape, log_p.shape[:-1])
    log_p = jnp.broadcast_to(log_p, batch + log_p.shape[-1:])
    index = jnp.broadcast_to(index, batch)[..., None]
    return jnp.take_along_axis(log_p, index, axis=-1, mode="clip")[..., 0]


class Categorical(Distribution):
    """Categorical distribution over ``{0, ..., K-1}`` (``K = probs.shape[-1]``)."""

    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    has_enumerate_support = True
    _pytree_data_fields = ("_probs", "_logits")

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        name, arr = _categorical_params(type(self).__name__, probs, logits)
        setattr(self, "_" + name, arr)
        super().__init__(validate_args=validate_args)

    @property
    def _num_categories(self) -> int:
        return self._param("probs" if "_probs" in self.__dict__ else "logits").shape[-1]

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.integer_interval(0, self._num_categories - 1)

    @property
    def probs(self) -> Array:
        """Category probabilities, shape ``batch_shape + (K,)``."""
        p = self.__dict__.get("_probs")
        return jax.nn.softmax(self._logits, axis=-1) if p is None else p

    @property
    def logits(self) -> Array:
        """Normalized log-probabilities, shape ``batch_shape + (K,)``."""
        logits = self.__dict__.get("_logits")
        if logits is None:
            return jnp.log(self._probs)
        return jax.nn.log_softmax(logits, axis=-1)

    def _sample_index(self, key: PRNGKey, shape: Shape) -> Array:
        logits = self.__dict__.get("_logits")
        if logits is None:
            logits = jnp.log(self._probs)
        return jax.random.categorical(key, logits, axis=-1, shape=shape)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        draws = self._sample_index(key, self.shape(sample_shape))
        return draws.astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        index = jnp.asarray(value).astype(int_dtype())
        return _gather(self.logits, index)

    @property
    def mean(self) -> Array:
        return jnp.full(self.batch_shape, jnp.nan, dtype=self.probs.dtype)

    @property
    def variance(self) -> Array:
        return jnp.full(self.batch_shape, jnp.nan, dtype=self.probs.dtype)

    def enumerate_support(self, expand: bool = True) -> Array:
        values = jnp.arange(self._num_categories, dtype=int_dtype())
        return _enumerate(values, self.batch_shape, (), expand)


class OneHotCategorical(Categorical):
    """Categorical distribution whose values are one-hot vectors of size ``K``."""

    support = constraints.one_hot

    @property
    def event_shape(self) -> Shape:
        return (self._num_categories,)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        index = self._sample_index(key, self.shape(sample_shape)[:-1])
        return jax.nn.one_hot(index, self._num_categories, dtype=int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        index = jnp.argmax(jnp.asarray(value), axis=-1)
        return _gather(self.logits, index)

    @property
    def mean(self) -> Array:
        return self.probs

    @property
    def variance(self) -> Array:
        p = self.probs
        return p * (1 - p)

    def enumerate_support(self, expand: bool = True) -> Array:
        k = self._num_categories
        values = jnp.eye(k, dtype=int_dtype())
        return _enumerate(values, self.batch_shape, (k,), expand)


class Poisson(Distribution):
    """Poisson distribution with mean ``rate``."""

    arg_constraints = {"rate": constraints.positive}
    support = constraints.nonnegative_integer
    _pytree_data_fields = ("rate",)

    def __init__(self, rate: ArrayLike, *, validate_args: bool | None = None):
        (self.rate,) = promote_params("Poisson", rate=rate)
        super().__init__(validate_args=validate_args)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        draws = jax.random.poisson(key, self.rate, self.shape(sample_shape))
        return draws.astype(int_dtype())

    def _log_prob(self, value: ArrayLike) -> Array:
        k = jnp.asarray(value, dtype=float_dtype(value, self.rate))
        return special.xlogy(k, self.rate) - self.rate - special.gammaln(k + 1)

    @property
    def mean(self) -> Array:
        return self.rate

    @property
    def variance(self) -> Array:
        return self.rate
