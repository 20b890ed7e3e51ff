"""``Predictive``: prior predictive, posterior predictive from a guide, and
predictive from given posterior samples, vectorized over draws.

Each draw runs the model once under ``seed`` (with the guide's values replayed,
or the posterior sample substituted) and records its sites; ``jax.vmap`` runs all
draws at once, inside one ``jax.jit`` per argument shapes.

May import (within jsvi): ``jsvi.core``, ``jsvi.infer``, ``jsvi._args``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._args import ArgSpec, merge_args, split_args
from jsvi._typing import Array, ModelFn, Params, PRNGKey
from jsvi.core.handlers import as_key, block, replay, seed, substitute, trace
from jsvi.core.runtime import Message
from jsvi.errors import ArgumentError, ShapeError, SiteError
from jsvi.infer.discrete import infer_discrete

__all__ = ["Predictive"]


def _check_samples(
    samples: Any, num_samples: int | None, batch_ndims: int = 1
) -> tuple[dict, tuple[int, ...]]:
    """The samples as arrays, and their shared batch shape (``batch_ndims`` dims)."""
    if not isinstance(samples, Mapping) or not samples:
        raise ArgumentError(
            "Predictive: posterior_samples must be a non-empty dict site name -> "
            f"array with a leading axis over draws, got {samples!r}."
        )
    samples = {k: jnp.asarray(v) for k, v in samples.items()}
    sizes = {
        k: (v.shape[:batch_ndims] if v.ndim >= batch_ndims else None)
        for k, v in samples.items()
    }
    distinct = set(sizes.values())
    if None in distinct or len(distinct) != 1:
        raise ShapeError(
            f"Predictive: posterior_samples must share {batch_ndims} leading (draws) "
            f"dims (batch_ndims={batch_ndims}), got leading shapes {sizes}. Stack the "
            "draws of every site along the same leading axes."
        )
    (batch_shape,) = distinct
    num = math.prod(batch_shape)
    if num_samples is not None and num_samples != num:
        raise ArgumentError(
            f"Predictive: num_samples={num_samples} but posterior_samples hold {num} "
            "draws. Drop num_samples, or slice the samples."
        )
    return samples, batch_shape


class Predictive:
    """Draw from the prior predictive, or from the posterior predictive given a
    trained guide or posterior samples.

    - ``Predictive(model, num_samples=n)``: the prior predictive.
    - ``Predictive(model, guide=guide, params=params, num_samples=n)``: each draw
      runs the guide (its ``jsvi.param`` values taken from ``params``), then the
      model with the guide's latent values and plate indices replayed.
    - ``Predictive(model, posterior_samples=samples)``: each draw runs the model
      with one posterior sample substituted for its latent sites.

    Calling it with the model's arguments returns a dict site name -> array with a
    leading axis over draws. Pass ``obs=None`` (however the model spells it) for
    the sites to predict, as the model then draws them.

    Args:
        model: the model function.
        guide: a trained guide (an autoguide or a hand-written one).
        params: constrained params by name, as ``jsvi.get_params`` returns them;
            used for the guide's and the model's ``jsvi.param`` sites. Required
            with a guide (for each of its params).
        posterior_samples: dict site name -> array ``(num_draws, ...)``.
        num_samples: number of draws (required for the prior and with a guide).
        return_sites: names of the sites to return (sample, deterministic or
            param sites); default every sample and deterministic site.
        infer_discrete: draw the model's enumerated sites (``infer={"enumerate":
            "parallel"}``) from their exact posterior given the observations and
            the draw's other values (``jsvi.infer_discrete``), in every draw.
        batch_ndims: how many leading dims of ``posterior_samples`` (default 1)
            or of ``params`` (with a guide; default 0) index draws or batches, as
            in NumPyro. ``posterior_samples`` shaped ``(chains, draws, ...)`` with
            ``batch_ndims=2`` give outputs ``(chains, draws, ...)``; ``params``
            with a leading batch dim ``B`` (say from ``jax.vmap`` over restarts)
            with ``batch_ndims=1`` give ``(B, num_samples, ...)``.
        parallel: draw all at once with ``jax.vmap`` (default), or one after
            another with ``jax.lax.map`` (``False``: less memory, same draws).

    Raises:
        ArgumentError: none of ``guide``, ``posterior_samples``, ``num_samples``;
            a guide without ``num_samples``; both a guide and samples.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("x", dist.Normal(z, 1.0))
        >>> draws = Predictive(model, num_samples=1000)(jax.random.key(0))
        >>> draws["x"].shape, round(float(draws["x"].var()), 0)
        ((1000,), 2.0)
    """

    def __init__(
        self,
        model: ModelFn,
        guide: ModelFn | None = None,
        params: Params | None = None,
        posterior_samples: Mapping[str, Any] | None = None,
        num_samples: int | None = None,
        return_sites: Sequence[str] | None = None,
        infer_discrete: bool = False,
        batch_ndims: int | None = None,
        parallel: bool = True,
    ):
        if not callable(model):
            raise ArgumentError(
                f"Predictive: model must be callable, got {type(model).__name__}."
            )
        if guide is not None and not callable(guide):
            raise ArgumentError(
                f"Predictive: guide must be callable, got {type(guide).__name__}."
            )
        if num_samples is not None and (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, int | np.integer)
            or num_samples < 1
        ):
            raise ArgumentError(
                f"Predictive: num_samples must be an int >= 1, got {num_samples!r}."
            )
        if guide is None and posterior_samples is None and num_samples is None:
            raise ArgumentError(
                "Predictive: nothing to draw from. Pass num_samples=n for the prior "
                "predictive, guide=... with params=... and num_samples=n for the "
                "posterior predictive, or posterior_samples=... to use given draws."
            )
        if guide is not None and posterior_samples is not None:
            raise ArgumentError(
                "Predictive: pass either a guide or posterior_samples, not both. To "
                "use the guide's draws as samples, draw them first (e.g. "
                "guide.sample_posterior) and pass posterior_samples."
            )
        if guide is not None and num_samples is None:
            raise ArgumentError(
                "Predictive: a guide needs num_samples, the number of draws to make. "
                "Pass e.g. Predictive(model, guide=guide, params=params, "
                "num_samples=1000)."
            )
        if params is not None and not isinstance(params, Mapping):
            raise ArgumentError(
                f"Predictive: params must be a dict name -> value, got "
                f"{type(params).__name__}. Pass jsvi.get_params(svi, state)."
            )
        if return_sites is not None:
            if isinstance(return_sites, str) or not all(
                isinstance(n, str) for n in return_sites
            ):
                raise ArgumentError(
                    f"Predictive: return_sites must be a list of site names, got "
                    f"{return_sites!r}."
                )
            return_sites = tuple(return_sites)
        if batch_ndims is None:
            batch_ndims = 1 if posterior_samples is not None else 0
        if isinstance(batch_ndims, bool) or not isinstance(batch_ndims, int) or (
            batch_ndims < 0
        ):
            raise ArgumentError(
                f"Predictive: batch_ndims must be an int >= 0, got {batch_ndims!r}."
            )
        if batch_ndims and guide is None and posterior_samples is None:
            raise ArgumentError(
                f"Predictive: batch_ndims={batch_ndims} applies to posterior_samples "
                "or to a guide's params; the prior predictive has no batch. Leave "
                "batch_ndims out."
            )
        if not isinstance(parallel, bool):
            raise ArgumentError(f"Predictive: parallel must be True or False, got {parallel!r}.")
        self.model = model
        self.guide = guide
        self.params = dict(params) if params is not None else None
        self.batch_ndims = batch_ndims
        self.parallel = parallel
        self.batch_shape: tuple[int, ...] = ()
        if posterior_samples is not None:
            self.posterior_samples, self.batch_shape = _check_samples(
                posterior_samples, None if num_samples is None else int(num_samples),
                batch_ndims,
            )
            num_samples = math.prod(self.batch_shape)
        else:
            self.posterior_samples = None
        self.num_samples = int(num_samples)
        self.return_sites = return_sites
        self.infer_discrete = bool(infer_discrete)
        # This predictive's own compiled draw (one program per argument structure),
        # dropped with it.
        batched = self.guide is not None and self.batch_ndims > 0
        self._compiled = jax.jit(
            functools.partial(_predict_batched_params if batched else _predict, self),
            static_argnums=(0,),
        )

    def __call__(self, rng_key: Any, *args: Any, **kwargs: Any) -> dict[str, Array]:
        """Draw ``num_samples`` times; return dict site name -> ``(num, ...)``."""
        key = as_key(rng_key, "Predictive")
        dynamic, spec = split_args(args, kwargs, "Predictive")
        return self._compiled(spec, key, self.params or {}, self.posterior_samples, dynamic)

    # -- one draw -------------------------------------------------------------
    def _param_fn(self, params: Mapping[str, Any]):
        def fn(msg: Message) -> Any:
            if msg.kind != "param":
                return None
            if msg.name in params:
                return params[msg.name]
            if self.guide is not None:
                raise ArgumentError(
                    f"Predictive: param {msg.name!r} is not in params. Pass the "
                    "trained params: Predictive(..., params=jsvi.get_params(svi, "
                    "state))."
                )
            return None

        return fn

    def _draw(
        self,
        key: PRNGKey,
        params: Mapping[str, Any],
        sample: Mapping[str, Array] | None,
        args: tuple,
        kwargs: Mapping[str, Any],
    ) -> dict[str, Array]:
        param_fn = self._param_fn(params)
        model = self.model
        guide_key, model_key = jax.random.split(key)
        with block():
            if self.guide is not None:
                guide = substitute(self.guide, substitute_fn=param_fn)
                guide_tr = trace(seed(guide, guide_key)).get_trace(*args, **kwargs)
                model = replay(model, trace=guide_tr)
            elif sample is not None:

                def sample_fn(msg: Message) -> Any:
                    return sample.get(msg.name) if msg.kind == "sample" else None

                model = substitute(model, substitute_fn=sample_fn)
            model = substitute(model, substitute_fn=param_fn)
            if self.infer_discrete:
                discrete_key = jax.random.fold_in(model_key, 1)
                model = infer_discrete(model, temperature=1, rng_key=discrete_key)
            model_tr = trace(seed(model, model_key)).get_trace(*args, **kwargs)
        return self._select(model_tr)

    def _select(self, model_tr: Any) -> dict[str, Array]:
        if self.return_sites is None:
            return {
                n: s.value
                for n, s in model_tr.items()
                if s.kind in ("sample", "deterministic")
            }
        missing = [n for n in self.return_sites if n not in model_tr]
        if missing:
            raise SiteError(
                f"Predictive: return_sites {missing} are not sites of the model. Its "
                f"sites: {[n for n in model_tr]}."
            )
        return {n: model_tr[n].value for n in self.return_sites}


def _predict(
    predictive: Predictive,
    spec: ArgSpec,
    key: PRNGKey,
    params: Mapping[str, Any],
    samples: Mapping[str, Array] | None,
    dynamic: list,
) -> dict[str, Array]:
    args, kwargs = merge_args(spec, dynamic)
    keys = jax.random.split(key, predictive.num_samples)
    loop = _mapper(predictive.parallel)

    def one(k: PRNGKey, sample: Mapping[str, Array] | None) -> dict[str, Array]:
        out = predictive._draw(k, params, sample, args, kwargs)
        return {n: jnp.asarray(v) for n, v in out.items()}

    if samples is None:
        return loop(lambda k: one(k, None))(keys)
    batch_shape = predictive.batch_shape
    flat = {n: v.reshape((-1,) + v.shape[len(batch_shape):]) for n, v in samples.items()}
    out = loop(one)(keys, flat)
    return {n: v.reshape(batch_shape + v.shape[1:]) for n, v in out.items()}


def _mapper(parallel: bool) -> Any:
    """``jax.vmap``, or the same map run one element at a time (``lax.map``)."""
    if parallel:
        return jax.vmap

    def sequential(f: Any) -> Any:
        return lambda *xs: jax.lax.map(lambda x: f(*x), xs)

    return sequential


def _predict_batched_params(
    predictive: Predictive,
    spec: ArgSpec,
    key: PRNGKey,
    params: Mapping[str, Any],
    samples: Mapping[str, Array] | None,
    dynamic: list,
) -> dict[str, Array]:
    """``_predict`` once per batch element of the params' leading
    ``batch_ndims`` dims."""
    nd = predictive.batch_ndims
    leaves = jax.tree.leaves(params)
    shapes = {tuple(jnp.shape(v)[:nd]) for v in leaves}
    if len(shapes) != 1 or len(next(iter(shapes))) != nd:
        raise ShapeError(
            f"Predictive: with batch_ndims={nd} every param needs the same {nd} "
            f"leading batch dims, got leading shapes {sorted(shapes)}. Stack the "
            "params of each batch element along the same leading axes."
        )
    (batch_shape,) = shapes
    num = math.prod(batch_shape)
    flat = jax.tree.map(lambda v: jnp.reshape(v, (num,) + jnp.shape(v)[nd:]), params)
    keys = jax.random.split(key, num)
    loop = _mapper(predictive.parallel)
    out = loop(lambda k, p: _predict(predictive, spec, k, p, samples, dynamic))(keys, flat)
    return {n: v.reshape(batch_shape + v.shape[1:]) for n, v in out.items()}

