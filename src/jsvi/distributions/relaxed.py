"""Continuous relaxations of discrete families with pathwise gradients.

``RelaxedBernoulli`` (the binary Concrete distribution) and
``RelaxedOneHotCategorical`` (the Concrete or Gumbel-softmax distribution) of
Maddison, Mnih and Teh (2017) and Jang, Gu and Poole (2017). Draws are
``sigmoid((logits + L) / temperature)`` with logistic noise ``L`` and
``softmax((logits + G) / temperature)`` with Gumbel noise ``G``; as the
temperature goes to 0 they concentrate on ``{0, 1}`` and on the one-hot vectors,
with the probabilities of the hard ``Bernoulli`` and ``Categorical``. Neither has
a closed-form mean or variance.

References:
    Maddison, Mnih and Teh, "The Concrete Distribution: A Continuous Relaxation of
    Discrete Random Variables", ICLR 2017.

May import (within jsvi): ``jsvi.distributions._base``,
``jsvi.distributions.discrete``, ``jsvi.constraints``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import float_dtype, promote_params
from jsvi.distributions.discrete import _categorical_params, _logit, _one_of
from jsvi.errors import ShapeError

__all__ = ["RelaxedBernoulli", "RelaxedOneHotCategorical"]


class RelaxedBernoulli(Distribution):
    """Binary Concrete distribution on ``[0, 1]`` at ``temperature``, relaxing
    ``Bernoulli(probs)`` (or ``logits``).

    Samples are clipped into ``[tiny, 1 - eps]`` so their log-density is finite.
    """

    arg_constraints = {
        "temperature": constraints.positive,
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    support = constraints.unit_interval
    has_rsample = True
    _pytree_data_fields = ("temperature", "_probs", "_logits")

    def __init__(
        self,
        temperature: ArrayLike,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        _one_of("RelaxedBernoulli", probs, logits)
        if probs is not None:
            self.temperature, self._probs = promote_params(
                "RelaxedBernoulli", temperature=temperature, probs=probs
            )
        else:
            self.temperature, self._logits = promote_params(
                "RelaxedBernoulli", temperature=temperature, logits=logits
            )
        super().__init__(validate_args=validate_args)

    @property
    def probs(self) -> Array:
        """Probability of the hard Bernoulli's 1, shape ``batch_shape``."""
        p = self.__dict__.get("_probs")
        return jax.nn.sigmoid(self._logits) if p is None else p

    @property
    def logits(self) -> Array:
        """Log-odds of the hard Bernoulli's 1, shape ``batch_shape``."""
        logits = self.__dict__.get("_logits")
        return _logit(self._probs) if logits is None else logits

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        t = self.temperature
        noise = jax.random.logistic(key, self.shape(sample_shape), dtype=t.dtype)
        y = jax.nn.sigmoid((self.logits + noise) / t)
        return jnp.clip(y, jnp.finfo(t.dtype).tiny, 1.0 - jnp.finfo(t.dtype).eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        t = self.temperature
        y = jnp.asarray(value, dtype=float_dtype(value, t))
        log_y, log_1my = jnp.log(y), jnp.log1p(-y)
        # logit(y) is Logistic(logits / t, 1 / t); then the sigmoid's Jacobian.
        z = t * (log_y - log_1my) - self.logits
        a = jnp.abs(z)
        return -a - 2.0 * jnp.log1p(jnp.exp(-a)) + jnp.log(t) - log_y - log_1my


class RelaxedOneHotCategorical(Distribution):
    """Concrete (Gumbel-softmax) distribution on the simplex at ``temperature``,
    relaxing ``OneHotCategorical(probs)`` (or ``logits``).

    Entries of the samples are clipped below at the dtype's smallest normal
    number.
    """

    arg_constraints = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    support = constraints.simplex
    has_rsample = True
    _pytree_data_fields = ("temperature", "_probs", "_logits")

    def __init__(
        self,
        temperature: ArrayLike,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        name, arr = _categorical_params("RelaxedOneHotCategorical", probs, logits)
        dtype = float_dtype(temperature, arr)
        temperature = jnp.asarray(temperature, dtype=dtype)
        arr = arr.astype(dtype)
        try:
            batch = jnp.broadcast_shapes(temperature.shape, arr.shape[:-1])
        except ValueError:
            raise ShapeError(
                f"RelaxedOneHotCategorical: temperature of shape {temperature.shape} "
                f"does not broadcast with the batch shape {arr.shape[:-1]} of {name}. "
                "Give them compatible shapes."
            ) from None
        self.temperature = jnp.broadcast_to(temperature, batch)
        setattr(self, "_" + name, jnp.broadcast_to(arr, batch + arr.shape[-1:]))
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        name = "_probs" if "_probs" in self.__dict__ else "_logits"
        return tuple(self.__dict__[name].shape[-1:])

    @property
    def probs(self) -> Array:
        """Category probabilities of the hard distribution, ``batch_shape + (K,)``."""
        p = self.__dict__.get("_probs")
        return jax.nn.softmax(self._logits, axis=-1) if p is None else p

    @property
    def logits(self) -> Array:
        """Normalized log-probabilities, shape ``batch_shape + (K,)``."""
        logits = self.__dict__.get("_logits")
        if logits is None:
            return jnp.log(self._probs)
        return jax.nn.log_softmax(logits, axis=-1)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        t = self.temperature[..., None]
        noise = jax.random.gumbel(key, self.shape(sample_shape), dtype=t.dtype)
        y = jax.nn.softmax((self.logits + noise) / t, axis=-1)
        return jnp.maximum(y, jnp.finfo(t.dtype).tiny)

    def _log_prob(self, value: ArrayLike) -> Array:
        t = self.temperature
        y = jnp.asarray(value, dtype=float_dtype(value, t))
        k = y.shape[-1]
        log_y = jnp.log(y)
        scores = self.logits - t[..., None] * log_y
        return (
            special.gammaln(jnp.asarray(k, t.dtype))
            + (k - 1) * jnp.log(t)
            + jnp.sum(scores - log_y, axis=-1)
            - k * jax.nn.logsumexp(scores, axis=-1)
        )
