"""The autoguide base class: a guide built by tracing the model.

Every call of an autoguide first runs the model once, hidden, with each latent site
at a fixed point of its support (see ``_prototype``). That *prototype* run gives the
latent sites' shapes, supports and plates; it costs nothing at run time inside
``jit`` (its results feed only Python-level structure, so XLA drops its
computations). The sites the guide covers are fixed at its first call; nothing
else it computes depends on Python state kept between calls.

The guide declares its parameters with ``jsvi.param`` (so ``svi_init`` finds them)
and its initial locations through a callable init that runs the model once more
under an init strategy. The most recent prototype is remembered (without traced
values) for ``median``/``quantiles``/``sample_posterior`` called without model
arguments.

May import (within jsvi): ``jsvi.autoguide._prototype``,
``jsvi.autoguide.initialization``, ``jsvi.core``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, Params, PRNGKey, Shape
from jsvi.autoguide._prototype import (
    InitLocs,
    LatentSite,
    Prototype,
    deterministic_sites,
    extract_prototype,
    isolate,
    prototype_trace,
)
from jsvi.autoguide.initialization import InitStrategy, check_strategy, init_to_median
from jsvi.core.handlers import as_key, seed, substitute, trace
from jsvi.core.runtime import Handler, Message
from jsvi.errors import ArgumentError, SiteError

__all__ = ["AutoGuide", "LazyInit", "check_scale", "with_deterministic"]


class LazyInit:
    """Initial values for one guide call, computed on first use.

    Each ``jsvi.param`` of the guide gets a callable init from here; the first one
    called (inside ``svi_init``, with the key ``seed`` gives it) runs the model
    once under the init strategy, and the others reuse that run, so all sites
    start from one coherent point. Inside ``svi_update`` params are substituted
    and nothing here runs.
    """

    def __init__(self, guide: AutoGuide, proto: Prototype, args: tuple, kwargs: dict):
        self._guide, self._proto = guide, proto
        self._args, self._kwargs = args, kwargs
        self._values: dict[str, Array] | None = None

    def values(self, rng_key: PRNGKey) -> dict[str, Array]:
        """Full-size constrained initial values by site name."""
        if self._values is None:
            latents = {s.name: s for s in self._proto.latents}
            run = InitLocs(self._guide.model, self._guide.init_loc_fn, rng_key, latents)
            with isolate():
                seed(run, rng_key=jax.random.fold_in(rng_key, 1))(
                    *self._args, **self._kwargs
                )
            self._values = run.values
        return self._values

    def constrained(self, name: str):
        return lambda key: self.values(key)[name]

    def unconstrained(self, latent: LatentSite):
        return lambda key: latent.transform.inv(self.values(key)[latent.name])


# ---------------------------------------------------------------------------
# the base class


def _takes_no_arguments(fn: ModelFn) -> bool:
    """Whether ``fn`` can be called without arguments (False when unsure)."""
    while isinstance(fn, Handler) and fn.fn is not None:
        fn = fn.fn  # a model wrapped in handlers (config_enumerate, ...)
    try:
        inspect.signature(fn).bind()
    except (TypeError, ValueError):
        return False
    return True


def with_deterministic(
    model: ModelFn,
    draws: dict[str, Array],
    params: Params,
    rng_key: PRNGKey,
    args: tuple,
    kwargs: Mapping[str, Any],
    sample_shape: Shape,
) -> dict[str, Array]:
    """``draws`` (leading ``sample_shape``) plus the model's ``deterministic``
    sites computed from each draw, when the model can be run (its arguments are
    given, or it takes none); ``draws`` alone otherwise."""
    if not (args or kwargs or _takes_no_arguments(model)):
        return draws
    num = math.prod(sample_shape)
    flat = {n: v.reshape((num,) + v.shape[len(sample_shape):]) for n, v in draws.items()}

    def one(k: PRNGKey, draw: dict[str, Array]) -> dict[str, Array]:
        return deterministic_sites(model, {**params, **draw}, k, args, kwargs)

    extra = jax.vmap(one)(jax.random.split(rng_key, num), flat)
    extra = {n: v.reshape(sample_shape + v.shape[1:]) for n, v in extra.items()}
    return {**draws, **extra}


def _check_prefix(prefix: Any, where: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ArgumentError(f"{where}: prefix must be a non-empty str, got {prefix!r}.")
    return prefix


def check_scale(init_scale: Any, where: str) -> float:
    """Raise unless ``init_scale`` is a positive number."""
    if isinstance(init_scale, bool) or not isinstance(init_scale, int | float):
        raise ArgumentError(
            f"{where}: init_scale must be a positive float, got {init_scale!r}."
        )
    if not (init_scale > 0 and math.isfinite(init_scale)):
        raise ArgumentError(
            f"{where}: init_scale must be a positive float, got {init_scale!r}."
        )
    return float(init_scale)


class AutoGuide:
    """Base class of guides built automatically from a model.

    An autoguide is a guide: call it with the model's arguments. It returns a dict
    site name -> sampled value. It covers the continuous latent sites of the model
    as first called (in ``svi_init``); later calls leave sites that were observed
    then but are not now (``obs=None`` in ``Predictive``) to the model. Everything
    else (shapes, supports, plates) is read afresh from the model on every call. Subclasses implement ``_body`` (declare params,
    sample every latent site), ``_param_names``, ``_median`` and ``_quantiles``.

    The guide's sites are fixed by its first call, which is why a guide restored
    from saved params should be called once with training-like arguments (or
    ``svi_init`` run) before ``Predictive`` calls it with ``obs=None``.

    Args:
        model: the model function.
        prefix: the prefix of the guide's parameter names (change it to use two
            autoguides of one model side by side).
        init_loc_fn: where the locations start; see ``jsvi.autoguide.init_to_*``.

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> from jsvi.autoguide import AutoNormal
        >>> def model(x):
        ...     s = jsvi.sample("s", dist.Gamma(2.0, 1.0))
        ...     with jsvi.plate("data", x.shape[0]):
        ...         jsvi.sample("x", dist.Normal(0.0, s), obs=x)
        >>> x = 2.0 * jax.random.normal(jax.random.key(0), (100,))
        >>> guide = AutoNormal(model)
        >>> svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
        >>> state, _ = jsvi.svi_run(svi, 0, 1000, x, progress_bar=False)
        >>> params = jsvi.get_params(svi, state)
        >>> bool(1.7 < guide.median(params)["s"] < 2.3)
        True
        >>> guide.quantiles(params, [0.05, 0.95])["s"].shape
        (2,)
        >>> guide.sample_posterior(jax.random.key(1), params, sample_shape=(10,))["s"].shape
        (10,)
    """

    def __init__(
        self,
        model: ModelFn,
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
    ):
        name = type(self).__name__
        if not callable(model):
            raise ArgumentError(
                f"{name}: model must be callable, got {type(model).__name__}. Pass "
                "the model function itself."
            )
        self.model = model
        self.prefix = _check_prefix(prefix, name)
        self.init_loc_fn = check_strategy(init_loc_fn, name)
        self._last: tuple[Prototype | None, str] = (None, "it has not been run yet")
        self._sites: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        model = getattr(self.model, "__name__", type(self.model).__name__)
        return f"{type(self).__name__}({model})"

    # -- running --------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Sample every continuous latent site of the model; return the values."""
        return self._body(self._prototype(args, kwargs), args, kwargs)

    def _prototype(self, args: tuple, kwargs: Mapping[str, Any]) -> Prototype:
        where = type(self).__name__
        tr, explicit = prototype_trace(self.model, args, kwargs)
        proto = extract_prototype(tr, explicit, where, self._sites)
        self._check(proto)
        clash = sorted(set(self._param_names(proto)) & proto.model_params)
        if clash:
            raise SiteError(
                f"{where}: the model has param sites named {clash}, which this guide "
                f"uses for its own parameters. Pass another prefix, e.g. "
                f"{where}(model, prefix='guide')."
            )
        if self._sites is None:
            self._sites = tuple(latent.name for latent in proto.latents)
        concrete = proto.concrete()
        if concrete is None:
            self._last = (None, "a latent site's support depends on them")
        else:
            self._last = (concrete, "")
        return proto

    def _structure(
        self, args: tuple, kwargs: Mapping[str, Any], where: str
    ) -> Prototype:
        if args or kwargs:
            return self._prototype(args, kwargs)
        proto, reason = self._last
        if proto is None and _takes_no_arguments(self.model):
            return self._prototype(args, kwargs)
        if proto is None:
            raise ArgumentError(
                f"{where}: pass the model's arguments, since {reason}: e.g. "
                f"{where.split('.')[-1]}(..., *model_args)."
            )
        return proto

    # -- hooks ----------------------------------------------------------------
    def _check(self, proto: Prototype) -> None:
        """Raise if this guide cannot cover the prototype."""

    def _param_names(self, proto: Prototype) -> list[str]:
        raise NotImplementedError

    def _body(self, proto: Prototype, args: tuple, kwargs: Mapping[str, Any]) -> dict:
        raise NotImplementedError

    def _median(self, params: Params, proto: Prototype) -> dict[str, Array]:
        raise NotImplementedError

    def _quantiles(self, params: Params, qs: Array, proto: Prototype) -> dict:
        raise NotImplementedError

    # -- after training -----------------------------------------------------------
    def _check_params(self, params: Any, proto: Prototype, where: str) -> None:
        if not isinstance(params, Mapping):
            raise ArgumentError(
                f"{where}: params must be a dict name -> value, got "
                f"{type(params).__name__}. Pass jsvi.get_params(svi, state)."
            )
        missing = [n for n in self._param_names(proto) if n not in params]
        if missing:
            raise ArgumentError(
                f"{where}: params lacks {missing}. Pass the constrained params of a "
                "run that trained this guide: jsvi.get_params(svi, state)."
            )

    def median(self, params: Params, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """The posterior median of every latent site, in constrained space.

        Sites in subsampled plates get their full size.

        Args:
            params: constrained params, as ``jsvi.get_params`` returns them.
            *args, **kwargs: the model's arguments; needed only before the guide
                has been run, or when a support depends on them.

        Returns:
            dict site name -> array of the site's (full) shape.
        """
        where = f"{type(self).__name__}.median"
        proto = self._structure(args, kwargs, where)
        self._check_params(params, proto, where)
        return self._median(params, proto)

    def quantiles(
        self, params: Params, quantiles: Any, *args: Any, **kwargs: Any
    ) -> dict[str, Array]:
        """Marginal posterior quantiles of every latent site, in constrained space.

        Computed per coordinate in unconstrained space and mapped through the
        site's bijection (exact for element-wise bijections; for a simplex or a
        Cholesky factor the coordinates are not the constrained marginals).

        Args:
            params: constrained params, as ``jsvi.get_params`` returns them.
            quantiles: a sequence of levels in (0, 1), e.g. ``[0.05, 0.5, 0.95]``.
            *args, **kwargs: the model's arguments (see ``median``).

        Returns:
            dict site name -> array of shape ``(len(quantiles),) + site shape``.
        """
        where = f"{type(self).__name__}.quantiles"
        qs = jnp.asarray(quantiles, dtype=jnp.result_type(float))
        if qs.ndim != 1 or not bool(jnp.all((qs > 0) & (qs < 1))):
            raise ArgumentError(
                f"{where}: quantiles must be a 1-D sequence of levels in (0, 1), got "
                f"{quantiles!r}. Pass e.g. [0.05, 0.5, 0.95]."
            )
        proto = self._structure(args, kwargs, where)
        self._check_params(params, proto, where)
        return self._quantiles(params, qs, proto)

    def sample_posterior(
        self,
        rng_key: Any,
        params: Params,
        *args: Any,
        sample_shape: Shape = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Draw latent values from the trained guide.

        Equivalent to running the guide with ``params`` under ``seed`` once per
        draw, vectorized with ``jax.vmap``. Sites in subsampled plates get the
        guide's subsample of each draw.

        Args:
            rng_key: a ``jax.random.key`` (or raw key, or int).
            params: constrained params, as ``jsvi.get_params`` returns them.
            *args, **kwargs: the model's arguments; needed only when the guide has
                not been run yet or when a support depends on them.
            sample_shape: leading shape of the draws.

        Returns:
            dict site name -> array of shape ``sample_shape + site shape``: the
            latent sites and, when the model can be run (its arguments are given,
            or it takes none), its ``deterministic`` sites computed from each draw.

        Example:
            >>> import jax, jax.numpy as jnp, optax, jsvi, jsvi.distributions as dist
            >>> from jsvi.autoguide import AutoNormal
            >>> def model():
            ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
            ...     jsvi.deterministic("z2", z**2)
            >>> guide = AutoNormal(model)
            >>> svi = jsvi.SVI(model, guide, optax.adam(1e-2), jsvi.Trace_ELBO())
            >>> params = jsvi.get_params(svi, jsvi.svi_init(svi, 0))
            >>> draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(5,))
            >>> bool(jnp.allclose(draws["z2"], draws["z"] ** 2))
            True
        """
        where = f"{type(self).__name__}.sample_posterior"
        key = as_key(rng_key, where)
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        sample_shape = tuple(int(s) for s in sample_shape)
        proto = self._structure(args, kwargs, where)
        self._check_params(params, proto, where)
        num = math.prod(sample_shape)
        with_deterministic = bool(proto.deterministics) and (
            bool(args or kwargs) or _takes_no_arguments(self.model)
        )

        def one(k: PRNGKey) -> dict[str, Array]:
            def body() -> dict[str, Array]:
                return self._body(proto, args, kwargs)

            def param_value(msg: Message) -> Any:
                return params.get(msg.name) if msg.kind == "param" else None

            with isolate(), trace() as tr:
                out = seed(substitute(body, substitute_fn=param_value), k)()
            if with_deterministic:
                plates = {n: s.value for n, s in tr.items() if s.kind == "plate"}
                values = {**params, **plates, **out}
                out = {
                    **out,
                    **deterministic_sites(
                        self.model, values, jax.random.fold_in(k, 1), args, kwargs
                    ),
                }
            return out

        draws = jax.vmap(one)(jax.random.split(key, num))
        return {n: v.reshape(sample_shape + v.shape[1:]) for n, v in draws.items()}
