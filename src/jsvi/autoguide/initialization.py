"""Strategies that pick where an autoguide starts: ``init_to_median``,
``init_to_mean``, ``init_to_sample``, ``init_to_uniform``, ``init_to_feasible`` and
``init_to_value``.

A strategy is a function ``(site, rng_key) -> value``: given a latent sample site
of the model (a ``jsvi.Site`` whose ``fn`` is its distribution, already broadcast by
its plates) and a key, it returns a value of shape ``fn.batch_shape +
fn.event_shape`` inside ``fn.support``. The autoguide runs the model once with these
values (each site sees its parents' initial values) and starts its locations there.
Strategies with options are configured by calling them with keywords only, e.g.
``init_to_median(num_samples=31)`` or ``init_to_value(values={"z": 1.0})``.

May import (within jsvi): ``jsvi.transforms``, ``jsvi.core``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ArrayLike, PRNGKey
from jsvi.core.trace import Site
from jsvi.errors import ArgumentError
from jsvi.transforms import biject_to

__all__ = [
    "InitStrategy",
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
]

InitStrategy = Callable[[Site, PRNGKey], Any]


def _check_num_samples(num_samples: Any) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise ArgumentError(
            f"init_to_median: num_samples must be an int >= 1, got {num_samples!r}."
        )
    if num_samples < 1:
        raise ArgumentError(
            f"init_to_median: num_samples must be an int >= 1, got {num_samples}."
        )
    return num_samples


def init_to_median(
    site: Site | None = None,
    rng_key: PRNGKey | None = None,
    *,
    num_samples: int = 15,
) -> Any:
    """Start at the prior median, estimated from ``num_samples`` prior draws.

    The median is taken coordinate-wise in the site's unconstrained space and
    mapped back, so it always lies in the support (for a simplex, too). For
    one-dimensional supports this equals the constrained median.

    Args:
        site: the model's latent site (omit it to configure the strategy).
        rng_key: key for the prior draws.
        num_samples: how many prior draws the median is taken over.

    Returns:
        A value of the site's shape, or (without ``site``) the configured strategy.

    Example:
        >>> import jax, jsvi.distributions as dist
        >>> from jsvi.core.trace import Site
        >>> site = Site("sample", "z", fn=dist.Normal(3.0, 1.0))
        >>> value = init_to_median(num_samples=101)(site, jax.random.key(0))
        >>> bool(abs(value - 3.0) < 0.5)
        True
    """
    num_samples = _check_num_samples(num_samples)
    if site is None:
        return functools.partial(init_to_median, num_samples=num_samples)
    draws = site.fn.sample(rng_key, (num_samples,))
    transform = biject_to(site.fn.support)
    return transform(jnp.median(transform.inv(draws), axis=0))


def init_to_sample(site: Site | None = None, rng_key: PRNGKey | None = None) -> Any:
    """Start at one draw from the prior.

    Example:
        >>> import jax, jsvi.distributions as dist
        >>> from jsvi.core.trace import Site
        >>> site = Site("sample", "s", fn=dist.Gamma(2.0, 1.0))
        >>> bool(init_to_sample(site, jax.random.key(0)) > 0)
        True
    """
    if site is None:
        return init_to_sample
    return site.fn.sample(rng_key)


def init_to_mean(site: Site | None = None, rng_key: PRNGKey | None = None) -> Any:
    """Start at the prior mean; where it is undefined or infinite (a Cauchy, a
    heavy-tailed StudentT), at the prior median instead.

    Example:
        >>> import jax, jsvi.distributions as dist
        >>> from jsvi.core.trace import Site
        >>> float(init_to_mean(Site("sample", "s", fn=dist.Gamma(2.0, 4.0)), jax.random.key(0)))
        0.5
    """
    if site is None:
        return init_to_mean
    try:
        mean = jnp.broadcast_to(
            site.fn.mean, tuple(site.fn.batch_shape) + tuple(site.fn.event_shape)
        )
    except (NotImplementedError, AttributeError):
        return init_to_median(site, rng_key)
    median = init_to_median(site, rng_key)
    return jnp.where(jnp.isfinite(mean), mean, median)


def init_to_uniform(
    site: Site | None = None,
    rng_key: PRNGKey | None = None,
    *,
    radius: float = 2.0,
) -> Any:
    """Start at a uniform draw in ``(-radius, radius)`` in unconstrained space,
    mapped onto the support (as Stan initializes its chains).

    Args:
        site: the model's latent site (omit it to configure the strategy).
        rng_key: key for the draw.
        radius: half-width of the unconstrained box (> 0).

    Example:
        >>> import jax, jsvi.distributions as dist
        >>> from jsvi.core.trace import Site
        >>> site = Site("sample", "s", fn=dist.Gamma(2.0, 1.0))
        >>> v = init_to_uniform(radius=1.0)(site, jax.random.key(0))
        >>> bool(jnp.exp(-1.0) < v < jnp.exp(1.0))
        True
    """
    if (
        isinstance(radius, bool)
        or not isinstance(radius, (int, float))
        or not 0 < radius < float("inf")
    ):
        raise ArgumentError(
            f"init_to_uniform: radius must be a positive float, got {radius!r}."
        )
    if site is None:
        return functools.partial(init_to_uniform, radius=float(radius))
    fn = site.fn
    transform = biject_to(fn.support)
    shape = transform.inverse_shape(tuple(fn.batch_shape) + tuple(fn.event_shape))
    u = jax.random.uniform(
        rng_key, shape, jnp.result_type(float), minval=-radius, maxval=radius
    )
    return transform(u)


def init_to_feasible(site: Site | None = None, rng_key: PRNGKey | None = None) -> Any:
    """Start at the image of 0 under ``biject_to(support)``: a fixed interior point.

    That is 0 for reals, 1 for positive values, the midpoint of an interval and the
    uniform vector on a simplex. Deterministic: ``rng_key`` is not used.

    Example:
        >>> import jsvi.distributions as dist
        >>> from jsvi.core.trace import Site
        >>> float(init_to_feasible(Site("sample", "p", fn=dist.Beta(2.0, 5.0))))
        0.5
    """
    del rng_key
    if site is None:
        return init_to_feasible
    fn = site.fn
    transform = biject_to(fn.support)
    shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    dtype = jnp.result_type(float)
    return transform(jnp.zeros(transform.inverse_shape(shape), dtype))


def init_to_value(
    site: Site | None = None,
    rng_key: PRNGKey | None = None,
    *,
    values: Mapping[str, ArrayLike] | None = None,
    fallback: InitStrategy | None = None,
) -> Any:
    """Start the sites named in ``values`` there; use ``fallback`` for the others.

    A value has the site's shape in one run of the model, or, for a site in a
    subsampled plate, the full shape (the plate's ``size`` at its dim): the guide
    then starts every element at its own value.

    Args:
        site: the model's latent site (omit it to configure the strategy).
        rng_key: key passed on to ``fallback``.
        values: dict site name -> initial (constrained) value.
        fallback: strategy for sites not in ``values`` (default:
            ``init_to_median``).

    Example:
        >>> import jax, jsvi.distributions as dist
        >>> from jsvi.core.trace import Site
        >>> strategy = init_to_value(values={"z": 2.5})
        >>> float(strategy(Site("sample", "z", fn=dist.Normal(0.0, 1.0)), jax.random.key(0)))
        2.5
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ArgumentError(
            f"init_to_value: values must be a dict site name -> value, got "
            f"{type(values).__name__}. Pass e.g. values={{'z': 1.0}}."
        )
    if fallback is None:
        fallback = init_to_median
    if not callable(fallback):
        raise ArgumentError(
            f"init_to_value: fallback must be a strategy such as init_to_median, got "
            f"{fallback!r}."
        )
    if site is None:
        return functools.partial(init_to_value, values=dict(values), fallback=fallback)
    if site.name in values:
        value = values[site.name]
        dtype = jnp.result_type(float, value)
        return jax.tree.map(lambda v: jnp.asarray(v, dtype), value)
    return fallback(site, rng_key)


def check_strategy(init_loc_fn: Any, where: str) -> InitStrategy:
    """Raise unless ``init_loc_fn`` is a callable strategy."""
    if not callable(init_loc_fn):
        raise ArgumentError(
            f"{where}: init_loc_fn must be a strategy such as "
            f"jsvi.autoguide.init_to_median, got {init_loc_fn!r}."
        )
    return init_loc_fn


def initial_value(strategy: InitStrategy, site: Site, rng_key: PRNGKey) -> Array:
    """Call ``strategy`` and return its value as a float array."""
    value = strategy(site, rng_key)
    if value is None:
        raise ArgumentError(
            f"sample site {site.name!r}: the init_loc_fn returned None. A strategy "
            "must return a value in the site's support (use init_to_value's "
            "fallback for sites it does not know)."
        )
    return jnp.asarray(value, dtype=jnp.result_type(float, value))
