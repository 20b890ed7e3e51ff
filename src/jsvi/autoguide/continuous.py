"""Joint Gaussian autoguides: ``AutoDiagonalNormal``, ``AutoMultivariateNormal``
and ``AutoLowRankMultivariateNormal``.

All continuous latent sites are mapped to unconstrained space, flattened and
concatenated into one vector ``u`` of size ``D`` (in the order the model samples
them), and ``u`` gets a Gaussian: diagonal, full-rank (``L L^T``) or low-rank
plus diagonal (``W W^T + diag(s^2)``).

The guide samples site by site from the Gaussian's conditionals: site ``i`` gets
``N(u_i | u_<i)``, given the unconstrained values of the sites sampled before it,
reshaped and mapped onto the site's support by a ``TransformedDistribution``. The
product of the conditionals is the joint density, so every site's ``log_prob`` is
computed from its value (replaying a trace, sticking the landing and
``Predictive`` all see the exact joint density) and no auxiliary site is needed.
For a full-rank Gaussian a conditional costs one triangular solve; for the
low-rank one, an ``r x r`` Cholesky (Woodbury identity).

Plates are flattened into the vector; subsampled plates are not supported (use
``AutoNormal`` for local latents of a minibatched model).

May import (within jsvi): ``jsvi.autoguide._base``, ``jsvi.autoguide._prototype``,
``jsvi.autoguide.initialization``, ``jsvi.core``, ``jsvi.distributions``,
``jsvi.constraints``, ``jsvi.transforms``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, ModelFn, Params, Shape
from jsvi.autoguide._base import AutoGuide, LazyInit, check_scale
from jsvi.autoguide._prototype import LatentSite, Prototype
from jsvi.autoguide.initialization import InitStrategy, init_to_median
from jsvi.constraints import Constraint
from jsvi.core.primitives import param, sample
from jsvi.distributions import (
    Distribution,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
)
from jsvi.errors import ArgumentError
from jsvi.transforms import Transform

__all__ = [
    "AutoContinuous",
    "AutoDiagonalNormal",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
]


class _Reshape(Transform):
    """Vectors of size ``prod(shape)`` onto arrays of ``shape`` (volume-preserving)."""

    def __init__(self, shape: Shape):
        self.shape = tuple(int(s) for s in shape)

    @property
    def domain(self) -> Constraint:  # type: ignore[override]
        return constraints.real_vector

    @property
    def codomain(self) -> Constraint:  # type: ignore[override]
        return constraints.independent(constraints.real, len(self.shape))

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        return x.reshape(x.shape[:-1] + self.shape)

    def inv(self, y: ArrayLike) -> Array:
        y = jnp.asarray(y)
        return y.reshape(y.shape[: y.ndim - len(self.shape)] + (-1,))

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x)
        return jnp.zeros(x.shape[:-1], dtype=jnp.result_type(float, x))

    def forward_shape(self, shape: Shape) -> Shape:
        return tuple(shape[:-1]) + self.shape

    def inverse_shape(self, shape: Shape) -> Shape:
        batch = tuple(shape[: len(shape) - len(self.shape)])
        return batch + (math.prod(self.shape),)


class AutoContinuous(AutoGuide):
    """Base of the joint Gaussian guides over the flattened unconstrained latents.

    Subclasses declare their parameters in ``_family_params`` and give the
    conditional of a block of coordinates in ``_conditional``, the joint in
    ``_joint`` and the marginal standard deviations in ``_marginal_sd``.

    Example:
        >>> import jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("a", dist.Normal(0.0, 1.0))
        ...     jsvi.sample("b", dist.Dirichlet(jnp.ones(3)))
        >>> guide = AutoMultivariateNormal(model)
        >>> tr = handlers.trace(handlers.seed(guide, 0)).get_trace()
        >>> params = {n: s.value for n, s in tr.param_sites().items()}
        >>> guide.get_posterior(params).event_shape  # 1 + 2 unconstrained coordinates
        (3,)
    """

    _conditions_on_previous = True

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

    # -- structure --------------------------------------------------------------
    def _check(self, proto: Prototype) -> None:
        for latent in proto.latents:
            for f in latent.subsampled:
                raise ArgumentError(
                    f"{type(self).__name__}: model site {latent.name!r} sits in plate "
                    f"{f.name!r}, subsampled ({f.subsample_size} of {f.size}). This "
                    "guide couples all latents in one vector, so it needs them all in "
                    "every run. Use AutoNormal or AutoDelta for local latents of a "
                    "minibatched model, or a full plate."
                )

    @staticmethod
    def _blocks(proto: Prototype) -> list[tuple[LatentSite, int, int]]:
        blocks, start = [], 0
        for latent in proto.latents:
            size = math.prod(latent.u_shape)
            blocks.append((latent, start, start + size))
            start += size
        return blocks

    @staticmethod
    def latent_dim(proto: Prototype) -> int:
        """``D``, the size of the flattened unconstrained latent vector."""
        return sum(math.prod(s.u_shape) for s in proto.latents)

    def _param_names(self, proto: Prototype) -> list[str]:
        return [f"{self.prefix}_loc"] + [
            f"{self.prefix}_{n}" for n in self._family_names()
        ]

    # -- hooks ----------------------------------------------------------------
    def _family_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _family_params(self, dim: int) -> dict[str, Array]:
        raise NotImplementedError

    def _conditional(
        self, fam: Mapping[str, Array], loc: Array, start: int, stop: int, prev: Array
    ) -> Distribution:
        """The Gaussian of coordinates ``start:stop`` given ``u[:start] = prev``."""
        raise NotImplementedError

    def _joint(self, fam: Mapping[str, Array], loc: Array) -> Distribution:
        raise NotImplementedError

    def _marginal_sd(self, fam: Mapping[str, Array]) -> Array:
        raise NotImplementedError

    # -- running --------------------------------------------------------------
    def _body(self, proto: Prototype, args: tuple, kwargs: Mapping[str, Any]) -> dict:
        if not proto.latents:
            return {}
        init = LazyInit(self, proto, args, kwargs)

        def init_loc(key: Any) -> Array:
            values = init.values(key)
            parts = [s.transform.inv(values[s.name]).reshape(-1) for s in proto.latents]
            return jnp.concatenate(parts)

        loc = param(f"{self.prefix}_loc", init_loc)
        fam = self._family_params(self.latent_dim(proto))
        values: dict[str, Array] = {}
        previous: list[Array] = []
        blocks = self._blocks(proto)
        for i, (latent, start, stop) in enumerate(blocks):
            prev = jnp.concatenate(previous) if previous else jnp.zeros((0,))
            base = self._conditional(fam, loc, start, stop, prev)
            fn = TransformedDistribution(
                base, [_Reshape(latent.u_shape), latent.transform]
            )
            values[latent.name] = value = sample(latent.name, fn)
            if self._conditions_on_previous and i + 1 < len(blocks):
                previous.append(latent.transform.inv(value).reshape(-1))
        return values

    # -- after training -----------------------------------------------------------
    def _read(self, params: Params) -> tuple[dict[str, Array], Array]:
        fam = {
            n: jnp.asarray(params[f"{self.prefix}_{n}"]) for n in self._family_names()
        }
        return fam, jnp.asarray(params[f"{self.prefix}_loc"])

    def _unpack(self, u: Array, proto: Prototype) -> dict[str, Array]:
        """Constrained site values from unconstrained vectors ``u`` (..., D)."""
        out = {}
        for latent, start, stop in self._blocks(proto):
            block = u[..., start:stop].reshape(u.shape[:-1] + latent.u_shape)
            out[latent.name] = latent.transform(block)
        return out

    def get_posterior(self, params: Params) -> Distribution:
        """The Gaussian over the flattened unconstrained latent vector ``u``.

        Args:
            params: constrained params, as ``jsvi.get_params`` returns them.

        Returns:
            A distribution with event shape ``(D,)``.

        Example:
            >>> import jax.numpy as jnp
            >>> guide = AutoDiagonalNormal(lambda: None)
            >>> q = guide.get_posterior({"auto_loc": jnp.zeros(2), "auto_scale": jnp.ones(2)})
            >>> q.event_shape
            (2,)
        """
        where = f"{type(self).__name__}.get_posterior"
        names = self._param_names(Prototype((), {}, frozenset()))
        missing = [n for n in names if n not in params]
        if missing:
            raise ArgumentError(
                f"{where}: params lacks {missing}. Pass jsvi.get_params(svi, state)."
            )
        fam, loc = self._read(params)
        return self._joint(fam, loc)

    def _median(self, params: Params, proto: Prototype) -> dict[str, Array]:
        _, loc = self._read(params)
        return self._unpack(loc, proto)

    def _quantiles(self, params: Params, qs: Array, proto: Prototype) -> dict:
        fam, loc = self._read(params)
        z = jax.scipy.special.ndtri(qs)[:, None]
        return self._unpack(loc + z * self._marginal_sd(fam), proto)


class AutoDiagonalNormal(AutoContinuous):
    """A diagonal Normal over all continuous latents, flattened into one vector.

    The same family as ``AutoNormal``, held in two vectors. Parameters:
    ``"<prefix>_loc"`` (``(D,)``, unconstrained) and ``"<prefix>_scale"``
    (``(D,)``, positive).

    Args:
        model: the model function.
        prefix: prefix of the parameter names.
        init_loc_fn: where ``loc`` starts (default ``init_to_median``).
        init_scale: the initial scales (default 0.1).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("s", dist.Gamma(2.0, 1.0))
        >>> tr = handlers.trace(handlers.seed(AutoDiagonalNormal(model), 0)).get_trace()
        >>> tr["auto_loc"].value.shape, round(float(tr["auto_scale"].value[0]), 6)
        ((1,), 0.1)
    """

    _conditions_on_previous = False

    def _family_names(self) -> tuple[str, ...]:
        return ("scale",)

    def _family_params(self, dim: int) -> dict[str, Array]:
        scale = param(
            f"{self.prefix}_scale",
            jnp.full((dim,), self.init_scale),
            constraint=constraints.positive,
        )
        return {"scale": scale}

    def _conditional(self, fam, loc, start, stop, prev) -> Distribution:
        del prev
        return Normal(loc[start:stop], fam["scale"][start:stop]).to_event(1)

    def _joint(self, fam, loc) -> Distribution:
        return Normal(loc, fam["scale"]).to_event(1)

    def _marginal_sd(self, fam) -> Array:
        return fam["scale"]


class AutoMultivariateNormal(AutoContinuous):
    """A full-rank Gaussian ``N(loc, L L^T)`` over all continuous latents.

    Parameters: ``"<prefix>_loc"`` (``(D,)``) and ``"<prefix>_scale_tril"``
    (``(D, D)``, lower triangular with positive diagonal), starting at
    ``init_scale * I``.

    Args:
        model: the model function.
        prefix: prefix of the parameter names.
        init_loc_fn: where ``loc`` starts (default ``init_to_median``).
        init_scale: the initial diagonal of ``L`` (default 0.1).

    Example:
        >>> import jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("w", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
        >>> tr = handlers.trace(handlers.seed(AutoMultivariateNormal(model), 0)).get_trace()
        >>> tr["auto_scale_tril"].value.shape
        (3, 3)
    """

    def _family_names(self) -> tuple[str, ...]:
        return ("scale_tril",)

    def _family_params(self, dim: int) -> dict[str, Array]:
        scale_tril = param(
            f"{self.prefix}_scale_tril",
            self.init_scale * jnp.eye(dim),
            constraint=constraints.lower_cholesky,
        )
        return {"scale_tril": scale_tril}

    def _conditional(self, fam, loc, start, stop, prev) -> Distribution:
        tril = fam["scale_tril"]
        mean = loc[start:stop]
        if start > 0:
            eps = jax.scipy.linalg.solve_triangular(
                tril[:start, :start], prev - loc[:start], lower=True
            )
            mean = mean + tril[start:stop, :start] @ eps
        return MultivariateNormal(mean, scale_tril=tril[start:stop, start:stop])

    def _joint(self, fam, loc) -> Distribution:
        return MultivariateNormal(loc, scale_tril=fam["scale_tril"])

    def _marginal_sd(self, fam) -> Array:
        return jnp.sqrt(jnp.sum(jnp.square(fam["scale_tril"]), axis=-1))


class AutoLowRankMultivariateNormal(AutoContinuous):
    """A Gaussian with low-rank plus diagonal covariance ``W W^T + diag(s^2)``.

    Parameters: ``"<prefix>_loc"`` (``(D,)``), ``"<prefix>_cov_factor"``
    (``W``, ``(D, rank)``, started at small random values so that the factor's
    directions can grow) and ``"<prefix>_scale"`` (``s``, ``(D,)``, positive).

    Args:
        model: the model function.
        rank: the rank of ``W`` (default ``round(sqrt(D))``, at least 1).
        prefix: prefix of the parameter names.
        init_loc_fn: where ``loc`` starts (default ``init_to_median``).
        init_scale: the initial ``s`` (default 0.1); ``W`` starts with entries of
            standard deviation ``init_scale / sqrt(rank)``.

    Example:
        >>> import jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("w", dist.Normal(jnp.zeros(9), 1.0).to_event(1))
        >>> guide = AutoLowRankMultivariateNormal(model)
        >>> handlers.trace(handlers.seed(guide, 0)).get_trace()["auto_cov_factor"].value.shape
        (9, 3)
    """

    def __init__(
        self,
        model: ModelFn,
        rank: int | None = None,
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
        init_scale: float = 0.1,
    ):
        super().__init__(
            model, prefix=prefix, init_loc_fn=init_loc_fn, init_scale=init_scale
        )
        if rank is not None and (
            isinstance(rank, bool) or not isinstance(rank, int) or rank < 1
        ):
            raise ArgumentError(
                f"AutoLowRankMultivariateNormal: rank must be an int >= 1 or None, "
                f"got {rank!r}."
            )
        self.rank = rank

    def _rank(self, dim: int) -> int:
        return self.rank if self.rank is not None else max(1, round(math.sqrt(dim)))

    def _family_names(self) -> tuple[str, ...]:
        return ("cov_factor", "scale")

    def _family_params(self, dim: int) -> dict[str, Array]:
        rank = self._rank(dim)
        sd = self.init_scale / math.sqrt(rank)
        cov_factor = param(
            f"{self.prefix}_cov_factor",
            lambda key: sd * jax.random.normal(key, (dim, rank)),
        )
        scale = param(
            f"{self.prefix}_scale",
            jnp.full((dim,), self.init_scale),
            constraint=constraints.positive,
        )
        return {"cov_factor": cov_factor, "scale": scale}

    def _conditional(self, fam, loc, start, stop, prev) -> Distribution:
        w, var = fam["cov_factor"], jnp.square(fam["scale"])
        w_b, var_b, mean = w[start:stop], var[start:stop], loc[start:stop]
        if start > 0:
            # Woodbury: with M = (I + W_A^T D_A^-1 W_A)^-1 the conditional has mean
            # m_B + W_B M W_A^T D_A^-1 (u_A - m_A) and covariance
            # D_B + W_B M W_B^T.
            w_a, var_a = w[:start], var[:start]
            rank = w.shape[-1]
            inner = jnp.eye(rank, dtype=w.dtype) + w_a.T @ (w_a / var_a[:, None])
            chol = jnp.linalg.cholesky(inner)
            m = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(rank, dtype=w.dtype))
            resid = (prev - loc[:start]) / var_a
            mean = mean + w_b @ (m @ (w_a.T @ resid))
            w_b = w_b @ jnp.linalg.cholesky(m)
        return LowRankMultivariateNormal(mean, w_b, var_b)

    def _joint(self, fam, loc) -> Distribution:
        return LowRankMultivariateNormal(
            loc, fam["cov_factor"], jnp.square(fam["scale"])
        )

    def _marginal_sd(self, fam) -> Array:
        w, scale = fam["cov_factor"], fam["scale"]
        return jnp.sqrt(jnp.sum(jnp.square(w), axis=-1) + jnp.square(scale))
