"""Transforms onto vectors and matrices: the simplex (stick breaking), lower
Cholesky factors, their outer products, and correlation Cholesky factors.

Imports ``jsvi.transforms._base``, ``jsvi.constraints``, ``jsvi._typing`` and
``jsvi.errors`` (within jsvi).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, Shape
from jsvi.transforms._base import (
    Transform,
    _gather_matrix,
    _side_from_count,
    _tril_index,
)

__all__ = [
    "CholeskyOuterTransform",
    "CorrCholeskyTransform",
    "CorrMatrixCholeskyTransform",
    "LowerCholeskyTransform",
    "StickBreakingTransform",
]


# ------------------------------------------------------------------- vectors


class StickBreakingTransform(Transform):
    """Stick breaking: ``R^(K-1)`` onto the ``K``-simplex.

    ``z_k = sigmoid(x_k - log(K - 1 - k))`` is the fraction broken off the
    remaining stick; ``x = 0`` maps to the uniform vector. Computed in log space.

    Example:
        >>> import jax.numpy as jnp
        >>> StickBreakingTransform()(jnp.zeros(3)).round(4).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """

    domain = constraints.real_vector
    codomain = constraints.simplex

    @staticmethod
    def _offset(k1: int, dtype: Any) -> Array:
        return jnp.log(jnp.arange(k1, 0, -1, dtype=dtype))

    def _logs(self, x: Array) -> tuple[Array, Array, Array]:
        u = x - self._offset(x.shape[-1], x.dtype)
        log_z = jax.nn.log_sigmoid(u)
        log_rest = jax.nn.log_sigmoid(-u)
        cum = jnp.cumsum(log_rest, axis=-1)
        return log_z, log_rest, cum

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x, dtype=jnp.result_type(float, x))
        log_z, log_rest, cum = self._logs(x)
        log_head = log_z + cum - log_rest
        return jnp.exp(jnp.concatenate([log_head, cum[..., -1:]], axis=-1))

    def inv(self, y: ArrayLike) -> Array:
        y = jnp.asarray(y, dtype=jnp.result_type(float, y))
        tiny = jnp.finfo(y.dtype).tiny
        rest = jnp.cumsum(y[..., ::-1], axis=-1)[..., ::-1][..., 1:]
        u = jnp.log(jnp.maximum(y[..., :-1], tiny)) - jnp.log(jnp.maximum(rest, tiny))
        return u + self._offset(u.shape[-1], u.dtype)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x, dtype=jnp.result_type(float, x))
        log_z, log_rest, cum = self._logs(x)
        return jnp.sum(log_z + cum, axis=-1)

    def forward_shape(self, shape: Shape) -> Shape:
        return tuple(shape[:-1]) + (shape[-1] + 1,)

    def inverse_shape(self, shape: Shape) -> Shape:
        return tuple(shape[:-1]) + (shape[-1] - 1,)


# ------------------------------------------------------------------ matrices


class LowerCholeskyTransform(Transform):
    """``R^(n(n+1)/2)`` onto lower-triangular matrices with positive diagonal.

    The first ``n(n-1)/2`` entries fill the strictly lower triangle row by row;
    the last ``n`` are the logs of the diagonal.
    """

    domain = constraints.real_vector
    codomain = constraints.lower_cholesky

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x, dtype=jnp.result_type(float, x))
        n = _side_from_count(x.shape[-1], 0, "LowerCholeskyTransform")
        m = n * (n - 1) // 2
        _, _, index = _tril_index(n, strict=True)
        lower = _gather_matrix(x[..., :m], index)
        diag = jnp.exp(x[..., m:])
        return lower + diag[..., None] * jnp.eye(n, dtype=x.dtype)

    def inv(self, y: ArrayLike) -> Array:
        y = jnp.asarray(y)
        rows, cols, _ = _tril_index(y.shape[-1], strict=True)
        diag = jnp.log(jnp.diagonal(y, axis1=-2, axis2=-1))
        return jnp.concatenate([y[..., rows, cols], diag], axis=-1)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x, dtype=jnp.result_type(float, x))
        n = _side_from_count(x.shape[-1], 0, "LowerCholeskyTransform")
        return jnp.sum(x[..., n * (n - 1) // 2 :], axis=-1)

    def forward_shape(self, shape: Shape) -> Shape:
        n = _side_from_count(shape[-1], 0, "LowerCholeskyTransform")
        return tuple(shape[:-1]) + (n, n)

    def inverse_shape(self, shape: Shape) -> Shape:
        n = shape[-1]
        return tuple(shape[:-2]) + (n * (n + 1) // 2,)


class CholeskyOuterTransform(Transform):
    """``y = L @ L.T``: lower Cholesky factors onto positive-definite matrices.

    The Jacobian is taken with respect to the lower triangles of ``L`` and ``y``
    (the free entries): ``log|J| = n log 2 + sum_i (n - i) log L_ii``.
    """

    domain = constraints.lower_cholesky
    codomain = constraints.positive_definite

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        y = x @ jnp.swapaxes(x, -1, -2)
        return 0.5 * (y + jnp.swapaxes(y, -1, -2))

    def inv(self, y: ArrayLike) -> Array:
        return jnp.linalg.cholesky(y)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x)
        n = x.shape[-1]
        diag = jnp.diagonal(x, axis1=-2, axis2=-1)
        powers = jnp.arange(n, 0, -1, dtype=diag.dtype)
        return n * math.log(2.0) + jnp.sum(powers * jnp.log(diag), axis=-1)


def _log1m_tanh_sq(x: Array) -> Array:
    """``log(1 - tanh(x)**2)`` without cancellation."""
    return 2.0 * (math.log(2.0) - x - jax.nn.softplus(-2.0 * x))


class CorrCholeskyTransform(Transform):
    """``R^(n(n-1)/2)`` onto Cholesky factors of correlation matrices.

    Entries ``z = tanh(x)`` are partial correlations filling the strictly lower
    triangle row by row; row ``i`` is ``L_ij = z_ij * sqrt(prod_{k<j} (1 -
    z_ik^2))`` and ``L_ii = sqrt(prod_{k<i} (1 - z_ik^2))``, so each row has unit
    norm. The Jacobian is taken with respect to the strictly lower triangle.
    """

    domain = constraints.real_vector
    codomain = constraints.corr_cholesky

    def _parts(self, x: Array) -> tuple[Array, Array, Array, int]:
        n = _side_from_count(x.shape[-1], 1, "CorrCholeskyTransform")
        _, _, index = _tril_index(n, strict=True)
        z = _gather_matrix(jnp.tanh(x), index)
        log1m = _gather_matrix(_log1m_tanh_sq(x), index)
        log_rest = jnp.cumsum(log1m, axis=-1) - log1m
        return z, log1m, log_rest, n

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x, dtype=jnp.result_type(float, x))
        z, _, log_rest, n = self._parts(x)
        return (z + jnp.eye(n, dtype=x.dtype)) * jnp.exp(0.5 * log_rest)

    def inv(self, y: ArrayLike) -> Array:
        y = jnp.asarray(y, dtype=jnp.result_type(float, y))
        rows, cols, _ = _tril_index(y.shape[-1], strict=True)
        # The stick left before column j, 1 - sum_{k<j} L_ik^2, equals the sum of
        # squares from column j on (rows have unit norm): no cancellation.
        rest = jnp.cumsum(jnp.square(y)[..., ::-1], axis=-1)[..., ::-1]
        tiny = jnp.finfo(y.dtype).tiny
        z = y[..., rows, cols] / jnp.sqrt(jnp.maximum(rest[..., rows, cols], tiny))
        eps = jnp.finfo(y.dtype).eps
        return jnp.arctanh(jnp.clip(z, -1.0 + eps, 1.0 - eps))

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x, dtype=jnp.result_type(float, x))
        _, log1m, log_rest, n = self._parts(x)
        mask = np.tril(np.ones((n, n), dtype=bool), k=-1)
        return jnp.sum(jnp.where(mask, log1m + 0.5 * log_rest, 0.0), axis=(-2, -1))

    def forward_shape(self, shape: Shape) -> Shape:
        n = _side_from_count(shape[-1], 1, "CorrCholeskyTransform")
        return tuple(shape[:-1]) + (n, n)

    def inverse_shape(self, shape: Shape) -> Shape:
        n = shape[-1]
        return tuple(shape[:-2]) + (n * (n - 1) // 2,)


class CorrMatrixCholeskyTransform(Transform):
    """``y = L @ L.T``: Cholesky factors of correlation matrices onto correlation
    matrices. With respect to the strictly lower triangles of ``L`` and ``y``,
    ``log|J| = sum_i (n - 1 - i) log L_ii`` (0-based rows)."""

    domain = constraints.corr_cholesky
    codomain = constraints.corr_matrix

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        y = x @ jnp.swapaxes(x, -1, -2)
        return 0.5 * (y + jnp.swapaxes(y, -1, -2))

    def inv(self, y: ArrayLike) -> Array:
        return jnp.linalg.cholesky(y)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x)
        n = x.shape[-1]
        diag = jnp.diagonal(x, axis1=-2, axis2=-1)
        powers = jnp.arange(n - 1, -1, -1, dtype=diag.dtype)
        return jnp.sum(powers * jnp.log(diag), axis=-1)
