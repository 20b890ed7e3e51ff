"""``AutoLaplaceApproximation``: a MAP point, then a Gaussian from the Hessian of
the log joint at that point, in unconstrained space.

May import (within jsvi): ``jsvi.autoguide.continuous``, ``jsvi.autoguide._base``,
``jsvi.autoguide._prototype``, ``jsvi.core``, ``jsvi.distributions``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Array, ModelFn, Params, Shape
from jsvi.autoguide._base import LazyInit, with_deterministic
from jsvi.autoguide._prototype import Prototype, isolate
from jsvi.autoguide.continuous import AutoContinuous
from jsvi.autoguide.initialization import InitStrategy, init_to_median
from jsvi.core.handlers import as_key, seed, substitute, trace
from jsvi.core.primitives import param, sample
from jsvi.distributions import Delta, MultivariateNormal
from jsvi.errors import ArgumentError, JsviError

__all__ = ["AutoLaplaceApproximation"]


class AutoLaplaceApproximation(AutoContinuous):
    r"""The Laplace approximation over all continuous latents, flattened into the
    unconstrained vector :math:`u` (as ``AutoMultivariateNormal`` does).

    **Training** finds the MAP point in unconstrained space: every site is a point
    mass at :math:`T(u)` with log-density :math:`-\log|\det J_T(u)|`, so
    ``Trace_ELBO``'s loss is :math:`-\log p(x, T(u)) - \log|\det J_T(u)|`, the
    negative log posterior density of :math:`u`. One particle is exact (there is
    no noise).

    **Afterwards** ``get_posterior`` is
    :math:`\mathcal N(\hat u, H^{-1})` with :math:`H` the Hessian of that negative
    log density at the trained :math:`\hat u` (computed with ``jax.hessian``, a
    ``D x D`` matrix). ``quantiles`` and ``sample_posterior`` use this Gaussian;
    ``median`` is :math:`T(\hat u)`. They need the model's arguments (the Hessian
    runs the model), as ``guide.quantiles(params, qs, *args)``.

    Parameters: ``"<prefix>_loc"`` (``(D,)``, unconstrained).

    Args:
        model: the model function.
        prefix: prefix of the parameter name.
        init_loc_fn: where ``loc`` starts (default ``init_to_median``).

    Raises:
        JsviError: (eagerly) the Hessian at ``loc`` is not positive definite: the
            point is not a maximum. Train longer or check the model.

    Example:
        >>> import jax, jax.numpy as jnp, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("x", dist.Normal(z, 1.0), obs=2.0)
        >>> guide = AutoLaplaceApproximation(model)
        >>> svi = jsvi.SVI(model, guide, optax.adam(0.1), jsvi.Trace_ELBO())
        >>> state, _ = jsvi.svi_run(svi, 0, 500, progress_bar=False)
        >>> q = guide.get_posterior(jsvi.get_params(svi, state))
        >>> [round(float(v), 3) for v in (q.loc[0], q.covariance_matrix[0, 0])]
        [1.0, 0.5]
    """

    def __init__(
        self,
        model: ModelFn,
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
    ):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _family_names(self) -> tuple[str, ...]:
        return ()

    def _body(self, proto: Prototype, args: tuple, kwargs: Mapping[str, Any]) -> dict:
        if not proto.latents:
            return {}
        init = LazyInit(self, proto, args, kwargs)

        def init_loc(key: Any) -> Array:
            values = init.values(key)
            parts = [s.transform.inv(values[s.name]).reshape(-1) for s in proto.latents]
            return jnp.concatenate(parts)

        loc = param(f"{self.prefix}_loc", init_loc)
        values = {}
        for latent, start, stop in self._blocks(proto):
            u = loc[start:stop].reshape(latent.u_shape)
            value = latent.transform(u)
            log_det = jnp.sum(latent.transform.log_abs_det_jacobian(u, value))
            point = Delta(value, log_density=-log_det, event_dim=len(latent.shape))
            values[latent.name] = sample(latent.name, point)
        return values

    # -- the Gaussian -------------------------------------------------------------
    def _neg_log_density(
        self, u: Array, params: Params, proto: Prototype, args: tuple, kwargs: Mapping
    ) -> Array:
        values = self._unpack(u, proto)
        data = {**{n: v for n, v in params.items()}, **values}
        with isolate():
            tr = trace(
                seed(substitute(self.model, data=data), rng_key=0)
            ).get_trace(*args, **kwargs)
        log_p = tr.log_prob_sum()
        for latent, start, stop in self._blocks(proto):
            block = u[start:stop].reshape(latent.u_shape)
            log_p = log_p + jnp.sum(
                latent.transform.log_abs_det_jacobian(block, values[latent.name])
            )
        return -log_p

    def _gaussian(
        self, params: Params, proto: Prototype, args: tuple, kwargs: Mapping, where: str
    ) -> MultivariateNormal:
        self._check_params(params, proto, where)
        loc = jnp.asarray(params[f"{self.prefix}_loc"])
        hessian = jax.hessian(self._neg_log_density)(loc, params, proto, args, kwargs)
        cov = jnp.linalg.inv(0.5 * (hessian + hessian.T))
        scale_tril = jnp.linalg.cholesky(0.5 * (cov + cov.T))
        if not isinstance(scale_tril, jax.core.Tracer) and not bool(
            jnp.all(jnp.isfinite(scale_tril))
        ):
            raise JsviError(
                f"{where}: the Hessian of the negative log posterior at "
                f"'{self.prefix}_loc' is not positive definite (eigenvalues "
                f"{jnp.linalg.eigvalsh(hessian)}), so the point is not a maximum. "
                "Train longer (or with a smaller step), or check that the posterior "
                "is proper."
            )
        return MultivariateNormal(loc, scale_tril=scale_tril)

    def get_posterior(  # type: ignore[override]
        self, params: Params, *args: Any, **kwargs: Any
    ) -> MultivariateNormal:
        """The Laplace Gaussian over the unconstrained vector ``u``, event ``(D,)``.

        Args:
            params: constrained params, as ``jsvi.get_params`` returns them.
            *args, **kwargs: the model's arguments.
        """
        where = f"{type(self).__name__}.get_posterior"
        proto = self._structure(args, kwargs, where)
        return self._gaussian(params, proto, args, kwargs, where)

    def quantiles(
        self, params: Params, quantiles: Any, *args: Any, **kwargs: Any
    ) -> dict[str, Array]:
        """Marginal quantiles of the Laplace Gaussian, mapped per coordinate onto
        each site's support. Shapes as for the other autoguides."""
        where = f"{type(self).__name__}.quantiles"
        qs = jnp.asarray(quantiles, dtype=jnp.result_type(float))
        if qs.ndim != 1 or not bool(jnp.all((qs > 0) & (qs < 1))):
            raise ArgumentError(
                f"{where}: quantiles must be a 1-D sequence of levels in (0, 1), got "
                f"{quantiles!r}. Pass e.g. [0.05, 0.5, 0.95]."
            )
        proto = self._structure(args, kwargs, where)
        q = self._gaussian(params, proto, args, kwargs, where)
        sd = jnp.sqrt(jnp.diag(q.covariance_matrix))
        z = jax.scipy.special.ndtri(qs)[:, None]
        return self._unpack(q.loc + z * sd, proto)

    def sample_posterior(
        self,
        rng_key: Any,
        params: Params,
        *args: Any,
        sample_shape: Shape = (),
        **kwargs: Any,
    ) -> dict[str, Array]:
        """Draws from the Laplace Gaussian, mapped onto the sites' supports.

        Returns:
            dict site name -> array of shape ``sample_shape + site shape``, with
            the model's ``deterministic`` sites when it can be run (its arguments
            are given, or it takes none).
        """
        where = f"{type(self).__name__}.sample_posterior"
        key = as_key(rng_key, where)
        if isinstance(sample_shape, int):
            sample_shape = (sample_shape,)
        sample_shape = tuple(int(s) for s in sample_shape)
        proto = self._structure(args, kwargs, where)
        q = self._gaussian(params, proto, args, kwargs, where)
        u = q.sample(key, (math.prod(sample_shape),))
        draws = self._unpack(u, proto)
        draws = {n: v.reshape(sample_shape + v.shape[1:]) for n, v in draws.items()}
        if not proto.deterministics:
            return draws
        return with_deterministic(
            self.model, draws, params, jax.random.fold_in(key, 1), args, kwargs,
            sample_shape,
        )
