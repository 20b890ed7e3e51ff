"""Continuous families with vector events.

``Dirichlet``, ``MultivariateNormal`` and ``LowRankMultivariateNormal``. All of
them sample with reparameterized gradients. Batch dims of vector and matrix
parameters broadcast against each other; every parameter is stored broadcast to
the full batch shape (so ``vmap`` keeps them aligned).

May import (within jsvi): ``jsvi.distributions._base``, ``jsvi.constraints``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special
from jax.scipy.linalg import solve_triangular

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape
from jsvi.distributions._base import Distribution
from jsvi.distributions._util import float_dtype
from jsvi.errors import ArgumentError, ShapeError

__all__ = ["Dirichlet", "LowRankMultivariateNormal", "MultivariateNormal"]

_LOG_2PI = math.log(2 * math.pi)


def _tril_solve(tril: Array, b: Array) -> Array:
    """Solve ``tril @ x = b`` for vectors ``b`` (``(..., k)``), batch dims broadcast."""
    k = tril.shape[-1]
    if tril.ndim == 2:
        flat = b.reshape(-1, k).T
        return solve_triangular(tril, flat, lower=True).T.reshape(b.shape)
    batch = jnp.broadcast_shapes(tril.shape[:-2], b.shape[:-1])
    tril = jnp.broadcast_to(tril, batch + (k, k))
    b = jnp.broadcast_to(b, batch + (k,))
    return solve_triangular(tril, b[..., None], lower=True)[..., 0]


def _matvec(m: Array, v: Array) -> Array:
    return jnp.einsum("...ij,...j->...i", m, v)


def _vector_loc(where: str, loc: Array, k: int) -> Array:
    """Give ``loc`` a trailing dim of size ``k`` (scalars and size-1 broadcast)."""
    if loc.ndim == 0:
        return jnp.broadcast_to(loc, (k,))
    if loc.shape[-1] == k:
        return loc
    if loc.shape[-1] == 1:
        return jnp.broadcast_to(loc, loc.shape[:-1] + (k,))
    raise ShapeError(
        f"{where}: loc has shape {loc.shape} but the event size is {k}. Give loc a "
        f"last dim of size {k} (or 1)."
    )


def _common_batch(where: str, **shapes: Shape) -> Shape:
    """The broadcast of the parameters' batch shapes (ShapeError if none)."""
    try:
        return tuple(jnp.broadcast_shapes(*shapes.values()))
    except ValueError:
        desc = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ShapeError(
            f"{where}: batch shapes of the parameters do not broadcast ({desc}). "
            "Give them compatible batch dims."
        ) from None


def _to_batch(x: Array, batch: Shape, event_ndim: int) -> Array:
    """Broadcast ``x`` to ``batch`` + its own event dims.

    Every parameter carries the full batch shape, so that ``vmap`` (which adds a
    leading axis to every leaf) keeps the batch dims of all parameters aligned.
    """
    return jnp.broadcast_to(x, batch + x.shape[x.ndim - event_ndim :])


class Dirichlet(Distribution):
    """Dirichlet distribution over the simplex of size ``concentration.shape[-1]``.

    Samples are clipped below at the dtype's smallest normal number.
    """

    arg_constraints = {
        "concentration": constraints.independent(constraints.positive, 1)
    }
    support = constraints.simplex
    has_rsample = True
    _pytree_data_fields = ("concentration",)

    def __init__(self, concentration: ArrayLike, *, validate_args: bool | None = None):
        concentration = jnp.asarray(concentration, dtype=float_dtype(concentration))
        if concentration.ndim < 1:
            raise ShapeError(
                f"Dirichlet: concentration must have at least one dim, got shape "
                f"{concentration.shape}. Pass a vector of size K for a K-simplex."
            )
        self.concentration = concentration
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return tuple(self.concentration.shape[-1:])

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        alpha = self.concentration
        shape = self.shape(sample_shape)[:-1]
        x = jax.random.dirichlet(key, alpha, shape, dtype=alpha.dtype)
        return jnp.maximum(x, jnp.finfo(alpha.dtype).tiny)

    def _log_prob(self, value: ArrayLike) -> Array:
        alpha = self.concentration
        norm = special.gammaln(jnp.sum(alpha, -1)) - jnp.sum(special.gammaln(alpha), -1)
        value = jnp.asarray(value, dtype=float_dtype(value, alpha))
        return jnp.sum(special.xlogy(alpha - 1, value), axis=-1) + norm

    @property
    def mean(self) -> Array:
        alpha = self.concentration
        return alpha / jnp.sum(alpha, -1, keepdims=True)

    @property
    def variance(self) -> Array:
        alpha = self.concentration
        total = jnp.sum(alpha, -1, keepdims=True)
        return alpha * (total - alpha) / (jnp.square(total) * (total + 1))


class MultivariateNormal(Distribution):
    """Multivariate normal given by exactly one of ``covariance_matrix``,
    ``precision_matrix`` or ``scale_tril`` (its lower Cholesky factor).

    Args:
        loc: mean, shape ``batch_shape + (k,)`` (a scalar broadcasts).
        covariance_matrix: shape ``batch_shape + (k, k)``, positive definite.
        precision_matrix: shape ``batch_shape + (k, k)``, positive definite.
        scale_tril: shape ``batch_shape + (k, k)``, lower triangular with a
            positive diagonal.

    The batch dims of ``loc`` and of the matrix broadcast against each other.

    Example:
        >>> import jax.numpy as jnp
        >>> d = MultivariateNormal(jnp.zeros((4, 2)), covariance_matrix=jnp.eye(2))
        >>> d.batch_shape, d.event_shape
        ((4,), (2,))
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "covariance_matrix": constraints.positive_definite,
        "precision_matrix": constraints.positive_definite,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True
    _pytree_data_fields = (
        "loc",
        "scale_tril",
        "_covariance_matrix",
        "_precision_matrix",
    )

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        covariance_matrix: ArrayLike | None = None,
        precision_matrix: ArrayLike | None = None,
        scale_tril: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        given = {
            k: v
            for k, v in (
                ("covariance_matrix", covariance_matrix),
                ("precision_matrix", precision_matrix),
                ("scale_tril", scale_tril),
            )
            if v is not None
        }
        if len(given) != 1:
            raise ArgumentError(
                "MultivariateNormal: exactly one of covariance_matrix, "
                f"precision_matrix, scale_tril must be given, got {sorted(given)}. "
                "Pass just one of them."
            )
        ((name, matrix),) = given.items()
        dtype = float_dtype(loc, matrix)
        matrix = jnp.asarray(matrix, dtype=dtype)
        if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
            raise ShapeError(
                f"MultivariateNormal: {name} must be a square matrix (shape "
                f"(..., k, k)), got shape {matrix.shape}. Pass a k x k matrix."
            )
        k = matrix.shape[-1]
        loc = _vector_loc("MultivariateNormal", jnp.asarray(loc, dtype=dtype), k)
        batch = _common_batch(
            "MultivariateNormal", loc=loc.shape[:-1], **{name: matrix.shape[:-2]}
        )
        self.loc = _to_batch(loc, batch, 1)
        matrix = _to_batch(matrix, batch, 2)
        if name == "scale_tril":
            self.scale_tril = matrix
        elif name == "covariance_matrix":
            self._covariance_matrix = matrix
            self.scale_tril = jnp.linalg.cholesky(matrix)
        else:
            self._precision_matrix = matrix
            self.scale_tril = _precision_to_scale_tril(matrix)
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return tuple(self.scale_tril.shape[-1:])

    @property
    def covariance_matrix(self) -> Array:
        """``scale_tril @ scale_tril.T``, shape ``batch_shape + (k, k)``."""
        cov = self.__dict__.get("_covariance_matrix")
        if cov is None:
            tril = self.scale_tril
            cov = tril @ jnp.swapaxes(tril, -1, -2)
        return jnp.broadcast_to(cov, self.batch_shape + cov.shape[-2:])

    @property
    def precision_matrix(self) -> Array:
        """Inverse covariance, shape ``batch_shape + (k, k)``."""
        prec = self.__dict__.get("_precision_matrix")
        if prec is None:
            tril = self.scale_tril
            eye = jnp.eye(tril.shape[-1], dtype=tril.dtype)
            inv = solve_triangular(tril, jnp.broadcast_to(eye, tril.shape), lower=True)
            prec = jnp.swapaxes(inv, -1, -2) @ inv
        return jnp.broadcast_to(prec, self.batch_shape + prec.shape[-2:])

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        eps = jax.random.normal(key, self.shape(sample_shape), dtype=self.loc.dtype)
        return self.loc + _matvec(self.scale_tril, eps)

    def _log_prob(self, value: ArrayLike) -> Array:
        diff = jnp.asarray(value) - self.loc
        z = _tril_solve(self.scale_tril, diff)
        diag = jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)
        half_log_det = jnp.sum(jnp.log(diag), axis=-1)
        k = self.event_shape[0]
        return (
            -0.5 * jnp.sum(jnp.square(z), axis=-1) - half_log_det - 0.5 * k * _LOG_2PI
        )

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Array:
        var = jnp.sum(jnp.square(self.scale_tril), axis=-1)
        return jnp.broadcast_to(var, self.batch_shape + self.event_shape)


def _precision_to_scale_tril(precision: Array) -> Array:
    """Lower Cholesky factor of ``inv(precision)``."""
    chol = jnp.linalg.cholesky(precision)
    eye = jnp.broadcast_to(
        jnp.eye(precision.shape[-1], dtype=precision.dtype), chol.shape
    )
    inv_chol = solve_triangular(chol, eye, lower=True)
    cov = jnp.swapaxes(inv_chol, -1, -2) @ inv_chol
    return jnp.linalg.cholesky(0.5 * (cov + jnp.swapaxes(cov, -1, -2)))


class LowRankMultivariateNormal(Distribution):
    """Multivariate normal with covariance ``cov_factor @ cov_factor.T +
    diag(cov_diag)``; ``log_prob`` uses the Woodbury identity and the
    ``rank x rank`` capacitance matrix, so it costs ``O(k rank^2)``.

    Args:
        loc: mean, shape ``batch_shape + (k,)``.
        cov_factor: shape ``batch_shape + (k, rank)``.
        cov_diag: positive, shape ``batch_shape + (k,)``.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "cov_factor": constraints.independent(constraints.real, 2),
        "cov_diag": constraints.independent(constraints.positive, 1),
    }
    support = constraints.real_vector
    has_rsample = True
    _pytree_data_fields = ("loc", "cov_factor", "cov_diag")

    def __init__(
        self,
        loc: ArrayLike,
        cov_factor: ArrayLike,
        cov_diag: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        where = "LowRankMultivariateNormal"
        dtype = float_dtype(loc, cov_factor, cov_diag)
        cov_factor = jnp.asarray(cov_factor, dtype=dtype)
        cov_diag = jnp.asarray(cov_diag, dtype=dtype)
        if cov_factor.ndim < 2:
            raise ShapeError(
                f"{where}: cov_factor must have shape (..., k, rank), got "
                f"{cov_factor.shape}. Pass a k x rank matrix."
            )
        k = cov_factor.shape[-2]
        cov_diag = _vector_loc(where, cov_diag, k)
        loc = _vector_loc(where, jnp.asarray(loc, dtype=dtype), k)
        batch = _common_batch(
            where,
            loc=loc.shape[:-1],
            cov_factor=cov_factor.shape[:-2],
            cov_diag=cov_diag.shape[:-1],
        )
        self.loc = _to_batch(loc, batch, 1)
        self.cov_factor = _to_batch(cov_factor, batch, 2)
        self.cov_diag = _to_batch(cov_diag, batch, 1)
        super().__init__(validate_args=validate_args)

    @property
    def event_shape(self) -> Shape:
        return tuple(self.cov_factor.shape[-2:-1])

    def _capacitance_tril(self) -> tuple[Array, Array]:
        """Cholesky of ``I + W^T D^-1 W`` and ``W^T D^-1``."""
        w, d = self.cov_factor, self.cov_diag
        wt_dinv = jnp.swapaxes(w, -1, -2) / d[..., None, :]
        rank = w.shape[-1]
        cap = jnp.eye(rank, dtype=w.dtype) + wt_dinv @ w
        return jnp.linalg.cholesky(cap), wt_dinv

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        key_w, key_d = jax.random.split(key)
        shape = self.shape(sample_shape)
        rank = self.cov_factor.shape[-1]
        dtype = self.loc.dtype
        eps_w = jax.random.normal(key_w, shape[:-1] + (rank,), dtype=dtype)
        eps_d = jax.random.normal(key_d, shape, dtype=dtype)
        return (
            self.loc + _matvec(self.cov_factor, eps_w) + jnp.sqrt(self.cov_diag) * eps_d
        )

    def _log_prob(self, value: ArrayLike) -> Array:
        diff = jnp.asarray(value) - self.loc
        cap_tril, wt_dinv = self._capacitance_tril()
        u = _matvec(wt_dinv, diff)
        v = _tril_solve(cap_tril, u)
        maha = jnp.sum(jnp.square(diff) / self.cov_diag, -1) - jnp.sum(
            jnp.square(v), -1
        )
        log_det = 2 * jnp.sum(
            jnp.log(jnp.diagonal(cap_tril, axis1=-2, axis2=-1)), -1
        ) + jnp.sum(jnp.log(self.cov_diag), -1)
        k = self.event_shape[0]
        return -0.5 * (k * _LOG_2PI + log_det + maha)

    @property
    def covariance_matrix(self) -> Array:
        """``cov_factor @ cov_factor.T + diag(cov_diag)``."""
        w = self.cov_factor
        cov = w @ jnp.swapaxes(w, -1, -2) + self.cov_diag[..., None] * jnp.eye(
            w.shape[-2], dtype=w.dtype
        )
        return jnp.broadcast_to(cov, self.batch_shape + cov.shape[-2:])

    @property
    def precision_matrix(self) -> Array:
        """Inverse covariance by the Woodbury identity."""
        cap_tril, wt_dinv = self._capacitance_tril()
        a = solve_triangular(cap_tril, wt_dinv, lower=True)
        d_inv = 1 / self.cov_diag
        prec = d_inv[..., None] * jnp.eye(d_inv.shape[-1], dtype=d_inv.dtype)
        prec = prec - jnp.swapaxes(a, -1, -2) @ a
        return jnp.broadcast_to(prec, self.batch_shape + prec.shape[-2:])

    @property
    def scale_tril(self) -> Array:
        """Lower Cholesky factor of the covariance."""
        return jnp.linalg.cholesky(self.covariance_matrix)

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Array:
        var = jnp.sum(jnp.square(self.cov_factor), -1) + self.cov_diag
        return jnp.broadcast_to(var, self.batch_shape + self.event_shape)
