"""More families with vector or matrix events.

``LKJCholesky`` and ``LKJ`` (correlation priors of Lewandowski, Kurowicka and
Joe, 2009), ``MultivariateStudentT`` and ``GaussianRandomWalk``. All sample with
pathwise gradients.

LKJ densities. ``LKJ(dimension=D, concentration=eta)`` has density proportional
to ``det(C)^(eta - 1)`` over ``D x D`` correlation matrices. Draws come from the
onion method: row ``i >= 1`` of the Cholesky factor ``L`` is ``(sqrt(y_i) u_i,
sqrt(1 - y_i), 0, ...)`` with ``y_i ~ Beta(i / 2, eta + (D - 1 - i) / 2)`` and
``u_i`` uniform on the unit sphere of ``R^i``. The density of those ``i`` entries
is ``(1 - |w_i|^2)^(b_i - 1) Gamma(i / 2) / (pi^(i / 2) B(i / 2, b_i))`` with
``b_i = eta + (D - 1 - i) / 2``, so ``LKJCholesky.log_prob`` is the sum over rows
of ``(2 eta + D - 3 - i) log L_ii`` and those normalizers (a density over the
strictly lower entries of ``L``); as ``i / 2 + b_i = eta + (D - 1) / 2`` for every
row, the normalizers take ``D`` lgammas of ``eta``-shaped arrays. ``LKJ.log_prob`` subtracts the log-Jacobian
``sum_i (D - 1 - i) log L_ii`` of ``L -> L L^T``.

May import (within jsvi): ``jsvi.distributions._base``,
``jsvi.distributions.continuous``, ``jsvi.distributions.multivariate``,
``jsvi.constraints``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import as_shape, float_dtype, promote_params
from jsvi.distributions.continuous import _tiny
from jsvi.distributions.multivariate import (
    _common_batch,
    _matvec,
    _to_batch,
    _tril_solve,
    _vector_loc,
)
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["GaussianRandomWalk", "LKJ", "LKJCholesky", "MultivariateStudentT"]

_LOG_PI = math.log(math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _positive_int(where: str, name: str, value: object, least: int) -> int:
    if (
        not isinstance(value, int | np.integer)
        or isinstance(value, bool)
        or int(value) < least
    ):
        raise ArgumentError(
            f"{where}: argument {name!r} must be a Python int >= {least}, got "
            f"{value!r}. Pass e.g. {name}={least}."
        )
    return int(value)


def _diag(x: Array) -> Array:
    return jnp.diagonal(x, axis1=-2, axis2=-1)


class LKJCholesky(Distribution):
    """Cholesky factors ``L`` of ``D x D`` correlation matrices ``L L^T`` whose
    density is proportional to ``det(L L^T)^(concentration - 1)``.

    Args:
        dimension: ``D``, a Python int >= 2.
        concentration: ``eta > 0``; 1 is uniform over correlation matrices,
            larger values favour the identity.

    Example:
        >>> import jax
        >>> LKJCholesky(3, 2.0).sample(jax.random.key(0)).shape
        (3, 3)
    """

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_cholesky
    has_rsample = True
    _pytree_data_fields = ("concentration",)

    def __init__(
        self,
        dimension: int = 2,
        concentration: ArrayLike = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        where = type(self).__name__
        self.dimension = _positive_int(where, "dimension", dimension, 2)
        (self.concentration,) = promote_params(where, concentration=concentration)
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return (self.dimension, self.dimension)

    def _beta_params(self) -> tuple[Array, Array]:
        """The Beta parameters of rows 1..D-1, shape ``batch_shape + (D - 1,)``."""
        d, eta = self.dimension, self.concentration
        i = jnp.arange(1, d, dtype=eta.dtype)
        a = jnp.broadcast_to(i / 2, eta.shape + (d - 1,))
        b = eta[..., None] + (d - 1 - i) / 2
        return a, b

    def _sample_cholesky(self, key: PRNGKey, sample_shape: Shape) -> Array:
        d, eta = self.dimension, self.concentration
        shape = tuple(sample_shape) + self.batch_shape
        key_y, key_u = jax.random.split(key)
        a, b = self._beta_params()
        ab = jnp.stack(jnp.broadcast_arrays(a, b), -1)
        log_g = jax.random.loggamma(
            key_y, jnp.broadcast_to(ab, shape + (d - 1, 2)), dtype=eta.dtype
        )
        y = jax.nn.sigmoid(log_g[..., 0] - log_g[..., 1])
        y = jnp.clip(y, 0.0, 1.0 - jnp.finfo(eta.dtype).eps)
        y = jnp.concatenate([jnp.zeros(shape + (1,), eta.dtype), y], axis=-1)
        z = jnp.tril(jax.random.normal(key_u, shape + (d, d), dtype=eta.dtype), -1)
        norm = jnp.sqrt(jnp.sum(jnp.square(z), axis=-1, keepdims=True))
        unit = z / jnp.where(norm > 0, norm, 1.0)
        diag = jnp.sqrt(1 - y)[..., None] * jnp.eye(d, dtype=eta.dtype)
        return unit * jnp.sqrt(y)[..., None] + diag

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        return self._sample_cholesky(key, as_shape(sample_shape))

    def _log_prob(self, value: ArrayLike) -> Array:
        d, eta = self.dimension, self.concentration
        value = jnp.asarray(value, dtype=float_dtype(value, eta))
        log_diag = jnp.log(_diag(value)[..., 1:])
        i = jnp.arange(1, d, dtype=eta.dtype)
        powers = 2 * eta[..., None] + (d - 3) - i
        # Row i's normalizer Gamma(i/2) / (pi^(i/2) B(i/2, b_i)) is
        # Gamma(eta + (D-1)/2) / (pi^(i/2) Gamma(b_i)): a_i + b_i is the same for
        # every row, so the rows share one lgamma and Gamma(i/2) cancels.
        b = eta[..., None] + (d - 1 - i) / 2
        log_norm = (
            (d - 1) * special.gammaln(eta + (d - 1) / 2)
            - jnp.sum(special.gammaln(b), axis=-1)
            - (d * (d - 1) / 4) * _LOG_PI
        )
        return jnp.sum(powers * log_diag, axis=-1) + log_norm


class LKJ(LKJCholesky):
    """``D x D`` correlation matrices ``C`` with density proportional to
    ``det(C)^(concentration - 1)``.

    ``mean`` is the identity; the off-diagonal variance is ``1 / (2 beta + 1)``
    with ``beta = concentration - 1 + D / 2`` (each correlation is ``2 x - 1`` for
    ``x ~ Beta(beta, beta)``).

    Example:
        >>> import jax
        >>> c = LKJ(3, 2.0).sample(jax.random.key(0))
        >>> bool(jax.numpy.allclose(jax.numpy.diagonal(c), 1.0))
        True
    """

    support = constraints.corr_matrix

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        chol = super().sample(key, sample_shape)
        return chol @ jnp.swapaxes(chol, -1, -2)

    def _log_prob(self, value: ArrayLike) -> Array:
        d = self.dimension
        value = jnp.asarray(value, dtype=float_dtype(value, self.concentration))
        chol = jnp.linalg.cholesky(value)
        lp = super()._log_prob(chol)
        log_jacobian = jnp.sum(
            jnp.arange(d - 2, -1, -1, dtype=chol.dtype) * jnp.log(_diag(chol)[..., 1:]),
            axis=-1,
        )
        return lp - log_jacobian

    @property
    def mean(self) -> Array:
        eye = jnp.eye(self.dimension, dtype=self.concentration.dtype)
        return jnp.broadcast_to(eye, self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Array:
        d, eta = self.dimension, self.concentration
        beta = eta - 1 + d / 2
        off = (1 / (2 * beta + 1))[..., None, None]
        eye = jnp.eye(d, dtype=eta.dtype)
        return jnp.broadcast_to(off * (1 - eye), self.batch_shape + self.event_shape)


class MultivariateStudentT(Distribution):
    """Multivariate Student's t: ``loc + scale_tril @ z / sqrt(g)`` with ``z``
    standard normal and ``g ~ Gamma(df / 2, df / 2)``.

    Args:
        df: degrees of freedom, shape ``batch_shape``.
        loc: location, shape ``batch_shape + (k,)`` (a scalar broadcasts).
        scale_tril: lower Cholesky factor of the scale matrix, shape
            ``batch_shape + (k, k)``.

    Like ``StudentT``, ``mean`` is inf where ``df <= 1``; ``variance`` is inf for
    ``1 < df <= 2`` and nan for ``df <= 1``.
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real_vector,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True
    _pytree_data_fields = ("df", "loc", "scale_tril")

    def __init__(
        self,
        df: ArrayLike,
        loc: ArrayLike = 0.0,
        scale_tril: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        where = "MultivariateStudentT"
        if scale_tril is None:
            raise ArgumentError(
                f"{where}: scale_tril must be given. Pass the lower Cholesky factor "
                "of the scale matrix, e.g. scale_tril=jnp.eye(k)."
            )
        dtype = float_dtype(df, loc, scale_tril)
        tril = jnp.asarray(scale_tril, dtype=dtype)
        if tril.ndim < 2 or tril.shape[-1] != tril.shape[-2]:
            raise ShapeError(
                f"{where}: scale_tril must be a square matrix (shape (..., k, k)), "
                f"got shape {tril.shape}. Pass a k x k lower-triangular matrix."
            )
        k = tril.shape[-1]
        df = jnp.asarray(df, dtype=dtype)
        loc = _vector_loc(where, jnp.asarray(loc, dtype=dtype), k)
        batch = _common_batch(
            where, df=df.shape, loc=loc.shape[:-1], scale_tril=tril.shape[:-2]
        )
        self.df = jnp.broadcast_to(df, batch)
        self.loc = _to_batch(loc, batch, 1)
        self.scale_tril = _to_batch(tril, batch, 2)
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return tuple(self.scale_tril.shape[-1:])

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        key_z, key_g = jax.random.split(key)
        shape = self.shape(sample_shape)
        dtype = self.loc.dtype
        z = jax.random.normal(key_z, shape, dtype=dtype)
        half = 0.5 * self.df
        g = jax.random.gamma(key_g, half, shape[:-1], dtype=dtype) / half
        g = jnp.maximum(g, _tiny(g))
        return self.loc + _matvec(self.scale_tril, z) * jax.lax.rsqrt(g)[..., None]

    def _log_prob(self, value: ArrayLike) -> Array:
        df, k = self.df, self.event_shape[0]
        y = _tril_solve(self.scale_tril, jnp.asarray(value) - self.loc)
        maha = jnp.sum(jnp.square(y), axis=-1)
        half_log_det = jnp.sum(jnp.log(_diag(self.scale_tril)), axis=-1)
        return (
            special.gammaln(0.5 * (df + k))
            - special.gammaln(0.5 * df)
            - 0.5 * k * (jnp.log(df) + _LOG_PI)
            - half_log_det
            - 0.5 * (df + k) * jnp.log1p(maha / df)
        )

    @property
    def mean(self) -> Array:
        full = self.batch_shape + self.event_shape
        return jnp.where(
            self.df[..., None] > 1, jnp.broadcast_to(self.loc, full), jnp.inf
        )

    @property
    def variance(self) -> Array:
        df = self.df[..., None]
        scale2 = jnp.sum(jnp.square(self.scale_tril), axis=-1)
        var = scale2 * df / jnp.where(df > 2, df - 2, 1.0)
        var = jnp.where(df > 2, var, jnp.where(df > 1, jnp.inf, jnp.nan))
        return jnp.broadcast_to(var, self.batch_shape + self.event_shape)


class GaussianRandomWalk(Distribution):
    """A random walk of ``num_steps`` steps with ``Normal(0, scale)`` increments,
    starting from 0 (the first value is the first increment).

    Example:
        >>> import jax
        >>> GaussianRandomWalk(1.0, num_steps=5).sample(jax.random.key(0)).shape
        (5,)
    """

    arg_constraints = {"scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True
    _pytree_data_fields = ("scale",)

    def __init__(
        self,
        scale: ArrayLike = 1.0,
        num_steps: int = 1,
        *,
        validate_args: bool | None = None,
    ):
        self.num_steps = _positive_int("GaussianRandomWalk", "num_steps", num_steps, 1)
        (self.scale,) = promote_params("GaussianRandomWalk", scale=scale)
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return (self.num_steps,)

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.normal(key, self.shape(sample_shape), dtype=self.scale.dtype)
        return jnp.cumsum(eps, axis=-1) * self.scale[..., None]

    def _log_prob(self, value: ArrayLike) -> Array:
        x = jnp.asarray(value)
        steps = jnp.concatenate([x[..., :1], jnp.diff(x, axis=-1)], axis=-1)
        scale = self.scale
        return -0.5 * jnp.sum(jnp.square(steps), axis=-1) / jnp.square(
            scale
        ) - self.num_steps * (jnp.log(scale) + _HALF_LOG_2PI)

    @property
    def mean(self) -> Array:
        return jnp.zeros(self.batch_shape + self.event_shape, self.scale.dtype)

    @property
    def variance(self) -> Array:
        steps = jnp.arange(1, self.num_steps + 1, dtype=self.scale.dtype)
        return jnp.square(self.scale)[..., None] * steps
