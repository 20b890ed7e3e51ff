"""Per-site autoguides: ``AutoDelta`` (point estimates) and ``AutoNormal``
(mean-field Normal in unconstrained space).

Each latent site gets its own parameters, shaped like the site with every
subsampled plate at its full size, and is sampled inside the same plates as in
the model: a run with a subsampled plate reads the elements at that run's indices,
and those indices are replayed into the model.

May import (within jsvi): ``jsvi.autoguide._base``, ``jsvi.autoguide._prototype``,
``jsvi.autoguide.initialization``, ``jsvi.core``, ``jsvi.distributions``,
``jsvi.constraints``, ``jsvi._typing``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi import constraints
from jsvi._typing import Array, ModelFn, Params
from jsvi.autoguide._base import AutoGuide, LazyInit, check_scale
from jsvi.autoguide._prototype import (
    LatentSite,
    Prototype,
    is_identity,
    is_static_constraint,
    take_subsample,
)
from jsvi.autoguide.initialization import InitStrategy, init_to_median
from jsvi.core.handlers import mask
from jsvi.core.primitives import param, plate, sample
from jsvi.core.runtime import Handler, Message
from jsvi.distributions import Delta, Normal, TransformedDistribution

__all__ = ["AutoDelta", "AutoNormal"]


class _PerSite(AutoGuide):
    """Shared plumbing of guides with one set of parameters per site."""

    def _plates(self, proto: Prototype) -> dict[str, plate]:
        plates = {}
        for latent in proto.latents:
            for f in reversed(latent.frames):
                if f.name not in plates:
                    info = proto.plates[f.name]
                    plates[f.name] = plate(
                        f.name,
                        info.size,
                        info.subsample_size,
                        dim=info.dim,
                        subsample=info.indices,
                    )
        return plates

    def _body(self, proto: Prototype, args: tuple, kwargs: Mapping[str, Any]) -> dict:
        init = LazyInit(self, proto, args, kwargs)
        # Params first, outside any plate: a param's init may run the model.
        params = [self._site_params(latent, init) for latent in proto.latents]
        plates = self._plates(proto)
        values = {}
        for latent, site_params in zip(proto.latents, params):
            with contextlib.ExitStack() as stack:
                indices = {
                    f.name: stack.enter_context(plates[f.name])
                    for f in reversed(latent.frames)
                }
                fn = self._site_dist(latent, site_params, indices)
                if latent.mask is not None:  # e.g. the missing entries of obs_mask
                    stack.enter_context(mask(mask=latent.mask))
                if isinstance(fn, Delta):
                    stack.enter_context(_AtPoint(latent.name, fn.v))
                values[latent.name] = sample(latent.name, fn)
        return values

    def _site_params(self, latent: LatentSite, init: LazyInit) -> tuple:
        raise NotImplementedError

    def _site_dist(self, latent: LatentSite, params: tuple, indices: dict) -> Any:
        raise NotImplementedError


class _AtPoint(Handler):
    """Gives one point-mass site its point as value before outer handlers run.

    A ``Delta`` draws its point anyway; setting it here means handlers that fill
    in missing values (``feasible_draws`` in ``svi_init``) keep it instead of a
    generic point of the reals, while ``replay``/``substitute`` still override it.
    """

    def __init__(self, name: str, value: Array):
        super().__init__()
        self.name, self.value = name, value

    def process(self, msg: Message) -> None:
        if msg.kind == "sample" and msg.name == self.name and msg.value is None:
            msg.value = self.value


class AutoDelta(_PerSite):
    """A point mass at a learned value for every continuous latent site (MAP).

    Training with ``Trace_ELBO`` maximizes ``log p(x, z)`` over ``z``: the
    maximum a posteriori point, in the model's own parameterization. Give a site a
    flat prior (a ``Uniform`` wide enough not to matter) and it becomes a
    maximum-likelihood point estimate, as used for hyperparameters.

    Parameters: ``"<site>_<prefix>_loc"``, the point itself in constrained space,
    with the site's support as its constraint. Where the support holds arrays
    (``Uniform(low, high)``) the point is stored unconstrained instead, as
    ``"<site>_<prefix>_loc_unconstrained"``. Sites in subsampled plates get
    full-size points.

    Args:
        model: the model function.
        prefix: prefix of the parameter names.
        init_loc_fn: where the points start (default ``init_to_median``).

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("x", dist.Normal(z, 1.0), obs=2.0)
        >>> guide = AutoDelta(model)
        >>> svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO())
        >>> state, _ = jsvi.svi_run(svi, 0, 500, progress_bar=False)
        >>> round(float(guide.median(jsvi.get_params(svi, state))["z"]), 3)  # 2 / 2
        1.0
    """

    def _names(self, latent: LatentSite) -> tuple[str, bool]:
        if is_static_constraint(latent.support):
            return f"{latent.name}_{self.prefix}_loc", True
        return f"{latent.name}_{self.prefix}_loc_unconstrained", False

    def _param_names(self, proto: Prototype) -> list[str]:
        return [self._names(latent)[0] for latent in proto.latents]

    def _site_params(self, latent: LatentSite, init: LazyInit) -> tuple:
        name, constrained = self._names(latent)
        if constrained:
            loc = param(
                name,
                init.constrained(latent.name),
                constraint=latent.support,
                event_dim=len(latent.event_shape),
            )
        else:
            loc = param(name, init.unconstrained(latent))
        return loc, constrained

    def _site_dist(self, latent: LatentSite, params: tuple, indices: dict) -> Any:
        loc, constrained = params
        value = take_subsample(loc, latent, indices)
        if not constrained:
            value = latent.transform(value)
        return Delta(value, event_dim=len(latent.event_shape))

    def _point(self, params: Params, latent: LatentSite) -> Array:
        name, constrained = self._names(latent)
        value = jnp.asarray(params[name])
        return value if constrained else latent.transform(value)

    def _median(self, params: Params, proto: Prototype) -> dict[str, Array]:
        return {s.name: self._point(params, s) for s in proto.latents}

    def _quantiles(self, params: Params, qs: Array, proto: Prototype) -> dict:
        out = {}
        for latent in proto.latents:
            point = self._point(params, latent)
            out[latent.name] = jnp.broadcast_to(point, qs.shape + point.shape)
        return out


class AutoNormal(_PerSite):
    """An independent Normal for every continuous latent site, in unconstrained
    space, mapped onto the site's support.

    Each site is ``TransformedDistribution(Normal(loc, scale), biject_to(support))``
    (just the Normal where the support is the reals), so its log-density includes
    the log-det-Jacobian of the bijection. Local latents in plates get one
    ``loc``/``scale`` per element; in subsampled plates, full-size parameters of
    which each run uses its subsample.

    Parameters: ``"<site>_<prefix>_loc"`` (unconstrained) and
    ``"<site>_<prefix>_scale"`` (positive).

    Args:
        model: the model function.
        prefix: prefix of the parameter names.
        init_loc_fn: where ``loc`` starts (default ``init_to_median``).
        init_scale: the initial ``scale`` (default 0.1).

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("x", dist.Normal(z, 1.0), obs=2.0)
        >>> guide = AutoNormal(model)
        >>> svi = jsvi.SVI(model, guide, optax.adam(0.05), jsvi.Trace_ELBO(8))
        >>> state, _ = jsvi.svi_run(svi, 0, 1000, progress_bar=False)
        >>> params = jsvi.get_params(svi, state)
        >>> bool(abs(params["z_auto_scale"] - 0.5 ** 0.5) < 0.05)  # exact sd
        True
    """

    def __init__(
        self,
        model: ModelFn,
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
        init_scale: float = 0.1,
    ):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)
        self.init_scale = check_scale(init_scale, type(self).__name__)

    def _param_names(self, proto: Prototype) -> list[str]:
        names = []
        for latent in proto.latents:
            names += [f"{latent.name}_{self.prefix}_loc"]
            names += [f"{latent.name}_{self.prefix}_scale"]
        return names

    def _site_params(self, latent: LatentSite, init: LazyInit) -> tuple:
        loc = param(f"{latent.name}_{self.prefix}_loc", init.unconstrained(latent))
        scale = param(
            f"{latent.name}_{self.prefix}_scale",
            jnp.full(latent.u_full_shape, self.init_scale),
            constraint=constraints.positive,
        )
        return loc, scale

    def _site_dist(self, latent: LatentSite, params: tuple, indices: dict) -> Any:
        loc, scale = params
        loc = take_subsample(loc, latent, indices)
        scale = take_subsample(scale, latent, indices)
        event_ndim = len(latent.u_shape) - len(latent.batch_shape)
        base = Normal(loc, scale).to_event(event_ndim)
        transform = latent.transform
        return (
            base if is_identity(transform) else TransformedDistribution(base, transform)
        )

    def _median(self, params: Params, proto: Prototype) -> dict[str, Array]:
        return {
            s.name: s.transform(jnp.asarray(params[f"{s.name}_{self.prefix}_loc"]))
            for s in proto.latents
        }

    def _quantiles(self, params: Params, qs: Array, proto: Prototype) -> dict:
        z = jax.scipy.special.ndtri(qs)
        out = {}
        for s in proto.latents:
            loc = jnp.asarray(params[f"{s.name}_{self.prefix}_loc"])
            scale = jnp.asarray(params[f"{s.name}_{self.prefix}_scale"])
            u = loc + scale * z.reshape(z.shape + (1,) * loc.ndim)
            out[s.name] = s.transform(u)
        return out
