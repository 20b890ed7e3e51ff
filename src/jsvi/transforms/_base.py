"""The ``Transform`` base class (a pytree), elementwise and affine transforms,
``IndependentTransform`` and ``ComposeTransform``, and the pytree helper that
distributions share.

Imports only ``jsvi.constraints``, ``jsvi._typing`` and ``jsvi.errors`` (within
jsvi).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import GetAttrKey

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, Shape, same_array_value
from jsvi.constraints import Constraint
from jsvi.errors import ArgumentError, ShapeError

__all__ = [
    "AffineTransform",
    "ComposeTransform",
    "ExpTransform",
    "IdentityTransform",
    "IndependentTransform",
    "PowerTransform",
    "SigmoidTransform",
    "Transform",
    "register_attribute_pytree",
]


# --------------------------------------------------------------- pytree helper


def _is_array(value: Any) -> bool:
    return isinstance(value, jax.Array | np.ndarray)


def register_attribute_pytree(cls: type) -> None:
    """Register ``cls`` as a pytree whose node data lives in ``__dict__``.

    Attributes named in ``cls._pytree_data_fields``, and any attribute holding an
    array, are children; every other attribute is static aux data (it must be
    hashable for ``jit`` to cache on it). Unflattening bypasses ``__init__``, so
    no validation or computation happens on leaves (which may be tracers or
    placeholders).
    """
    declared = frozenset(getattr(cls, "_pytree_data_fields", ()))

    def flatten_with_keys(obj: Any) -> tuple[list[tuple[Any, Any]], Any]:
        d = obj.__dict__
        names = tuple(n for n in sorted(d) if n in declared or _is_array(d[n]))
        static = tuple((n, d[n]) for n in sorted(d) if n not in names)
        return [(GetAttrKey(n), d[n]) for n in names], (names, static)

    def flatten(obj: Any) -> tuple[list[Any], Any]:
        children, aux = flatten_with_keys(obj)
        return [c for _, c in children], aux

    def unflatten(aux: Any, children: Any) -> Any:
        names, static = aux
        obj = object.__new__(cls)
        obj.__dict__.update(static)
        obj.__dict__.update(zip(names, children, strict=True))
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)


def _static_items(obj: Any) -> tuple[tuple[str, Any], ...]:
    fields = frozenset(getattr(type(obj), "_pytree_data_fields", ()))
    return tuple(
        (k, v)
        for k, v in sorted(obj.__dict__.items())
        if k not in fields and not _is_array(v)
    )


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, Transform | Constraint) or isinstance(b, Transform | Constraint):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(
            _same_value(x, y) for x, y in zip(a, b, strict=True)
        )
    return same_array_value(a, b)


# ------------------------------------------------------------------ utilities


def _sum_rightmost(x: Array, n: int) -> Array:
    return jnp.sum(x, axis=tuple(range(-n, 0))) if n > 0 else x


def _clip_unit(p: Array) -> Array:
    """Clip probabilities into ``[tiny, 1 - eps]`` of their dtype."""
    finfo = jnp.finfo(jnp.result_type(p))
    return jnp.clip(p, finfo.tiny, 1.0 - finfo.eps)


def _as_param(x: ArrayLike) -> Any:
    """Keep Python/NumPy scalars as floats (static-friendly); arrays as arrays."""
    if isinstance(x, int | float | np.integer | np.floating) and not isinstance(
        x, bool
    ):
        return float(x)
    return jnp.asarray(x)


def _side_from_count(m: int, offset: int, where: str) -> int:
    """The matrix side ``n`` with ``n * (n + 1 - 2 * offset) / 2 == m``."""
    # offset 0: lower triangle incl. diagonal; offset 1: strictly lower.
    n = int(round((math.sqrt(8 * m + 1) - 1) / 2)) + offset
    if n * (n + 1 - 2 * offset) // 2 != m:
        kind = "n(n+1)/2" if offset == 0 else "n(n-1)/2"
        raise ShapeError(
            f"{where}: the last dim of the input has size {m}, which is not {kind} "
            "for any integer n. Pass a vector with one entry per free matrix element."
        )
    return n


def _gather_matrix(vec: Array, index: np.ndarray) -> Array:
    """Place vector entries into a matrix: ``index`` points into ``vec`` padded
    with one trailing zero (used for the structural zeros)."""
    pad = jnp.zeros(vec.shape[:-1] + (1,), dtype=vec.dtype)
    return jnp.concatenate([vec, pad], axis=-1)[..., index]


def _tril_index(n: int, strict: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, cols of the (strictly) lower triangle and the matrix->vector map."""
    rows, cols = np.tril_indices(n, k=-1 if strict else 0)
    index = np.full((n, n), rows.size, dtype=np.int32)
    index[rows, cols] = np.arange(rows.size)
    return rows, cols, index


# ---------------------------------------------------------------------- base


class Transform:
    """Base class of bijective transforms.

    Subclasses implement ``__call__``, ``inv`` and ``log_abs_det_jacobian`` and
    declare ``domain``/``codomain``. Shape-changing transforms also override
    ``forward_shape`` and ``inverse_shape``.
    """

    domain: Constraint = constraints.real
    codomain: Constraint = constraints.real
    _pytree_data_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_attribute_pytree(cls)

    def __call__(self, x: ArrayLike) -> Array:
        """Map ``x`` (shape ``batch + domain event``) to the codomain."""
        raise NotImplementedError

    def inv(self, y: ArrayLike) -> Array:
        """Map ``y`` (shape ``batch + codomain event``) back to the domain."""
        raise NotImplementedError

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        """``log |det dy/dx|`` summed over the event dims; shape ``batch``."""
        raise NotImplementedError

    def forward_shape(self, shape: Shape) -> Shape:
        """The output shape for an input of ``shape``."""
        return tuple(shape)

    def inverse_shape(self, shape: Shape) -> Shape:
        """The input shape for an output of ``shape``."""
        return tuple(shape)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        keys = set(self.__dict__) | set(other.__dict__)
        return all(
            _same_value(self.__dict__.get(k), other.__dict__.get(k)) for k in keys
        )

    def __hash__(self) -> int:
        return hash((type(self), _static_items(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


register_attribute_pytree(Transform)


class IdentityTransform(Transform):
    """``y = x``."""

    def __call__(self, x: ArrayLike) -> Array:
        return jnp.asarray(x)

    def inv(self, y: ArrayLike) -> Array:
        return jnp.asarray(y)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        x = jnp.asarray(x)
        return jnp.zeros(x.shape, dtype=jnp.result_type(float, x))


class ExpTransform(Transform):
    """``y = exp(x)``: reals onto positive reals."""

    codomain = constraints.positive

    def __call__(self, x: ArrayLike) -> Array:
        return jnp.exp(x)

    def inv(self, y: ArrayLike) -> Array:
        return jnp.log(y)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        return jnp.asarray(x, dtype=jnp.result_type(float, x))


class SigmoidTransform(Transform):
    """``y = 1 / (1 + exp(-x))``, clipped into ``[tiny, 1 - eps]`` of the dtype."""

    codomain = constraints.unit_interval

    def __call__(self, x: ArrayLike) -> Array:
        return _clip_unit(jax.nn.sigmoid(x))

    def inv(self, y: ArrayLike) -> Array:
        y = _clip_unit(jnp.asarray(y, dtype=jnp.result_type(float, y)))
        return jnp.log(y) - jnp.log1p(-y)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        return -jax.nn.softplus(x) - jax.nn.softplus(-jnp.asarray(x))


class PowerTransform(Transform):
    """``y = x ** exponent`` on positive reals.

    Args:
        exponent: a nonzero array broadcastable with the input.
    """

    domain = constraints.positive
    codomain = constraints.positive
    _pytree_data_fields = ("exponent",)

    def __init__(self, exponent: ArrayLike):
        self.exponent = jnp.asarray(exponent)

    def __call__(self, x: ArrayLike) -> Array:
        return jnp.power(x, self.exponent)

    def inv(self, y: ArrayLike) -> Array:
        return jnp.power(y, 1.0 / self.exponent)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        x = jnp.asarray(x)
        out = jnp.log(jnp.abs(self.exponent)) + (self.exponent - 1) * jnp.log(x)
        return jnp.broadcast_to(out, jnp.shape(y))

    def forward_shape(self, shape: Shape) -> Shape:
        return jnp.broadcast_shapes(tuple(shape), jnp.shape(self.exponent))

    def inverse_shape(self, shape: Shape) -> Shape:
        return jnp.broadcast_shapes(tuple(shape), jnp.shape(self.exponent))


def _known_sign(x: Any) -> int:
    """+1/-1 when every entry of ``x`` is known (concrete) to be >0 / <0, else 0."""
    if isinstance(x, float):
        return 1 if x > 0 else -1 if x < 0 else 0
    if not isinstance(x, jax.Array | np.ndarray) or isinstance(x, jax.core.Tracer):
        return 0
    arr = np.asarray(x)
    if np.all(arr > 0):
        return 1
    return -1 if np.all(arr < 0) else 0


class AffineTransform(Transform):
    """``y = loc + scale * x``.

    Args:
        loc: array broadcastable with the input.
        scale: nonzero array broadcastable with the input.
        event_dim: number of rightmost dims forming one event (the log-det is
            summed over them).
        domain: the constraint the inputs satisfy (default ``real``); with
            ``positive``, ``greater_than`` or ``interval`` domains and a scale of
            known sign, the codomain is the mapped constraint.
    """

    _pytree_data_fields = ("loc", "scale")

    def __init__(
        self,
        loc: ArrayLike,
        scale: ArrayLike,
        event_dim: int = 0,
        *,
        domain: Constraint = constraints.real,
    ):
        self.loc = _as_param(loc)
        self.scale = _as_param(scale)
        self._event_dim = int(event_dim)
        if domain.event_dim < self._event_dim:
            domain = constraints.independent(domain, self._event_dim - domain.event_dim)
        self._domain = domain

    @property
    def domain(self) -> Constraint:  # type: ignore[override]
        return self._domain

    @property
    def codomain(self) -> Constraint:  # type: ignore[override]
        base, n = self._domain, 0
        if isinstance(base, constraints.Independent):
            base, n = base.base_constraint, base.reinterpreted_batch_ndims
        out = self._map_constraint(base)
        return constraints.independent(out, n) if n else out

    def _map_constraint(self, c: Constraint) -> Constraint:
        if isinstance(c, constraints.Real):
            return constraints.real
        sign = _known_sign(self.scale)
        if sign == 0 and isinstance(c, constraints.Interval):
            # any nonzero scale maps an interval onto the interval between the
            # images of its ends (traced scales included)
            a = self.loc + self.scale * c.lower_bound
            b = self.loc + self.scale * c.upper_bound
            return constraints.interval(jnp.minimum(a, b), jnp.maximum(a, b))
        if sign == 0:
            return constraints.real
        if isinstance(c, constraints.GreaterThan):
            bound = self.loc + self.scale * c.lower_bound
            return (
                constraints.greater_than(bound)
                if sign > 0
                else constraints.less_than(bound)
            )
        if isinstance(c, constraints.LessThan):
            bound = self.loc + self.scale * c.upper_bound
            return (
                constraints.less_than(bound)
                if sign > 0
                else constraints.greater_than(bound)
            )
        if isinstance(c, constraints.Interval):
            a = self.loc + self.scale * c.lower_bound
            b = self.loc + self.scale * c.upper_bound
            return (
                constraints.interval(a, b) if sign > 0 else constraints.interval(b, a)
            )
        return constraints.real

    def __call__(self, x: ArrayLike) -> Array:
        return self.loc + self.scale * jnp.asarray(x)

    def inv(self, y: ArrayLike) -> Array:
        return (jnp.asarray(y) - self.loc) / self.scale

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del x
        log_scale = jnp.log(jnp.abs(jnp.asarray(self.scale)))
        shape = jnp.broadcast_shapes(jnp.shape(y), jnp.shape(log_scale))
        return _sum_rightmost(jnp.broadcast_to(log_scale, shape), self._event_dim)

    def forward_shape(self, shape: Shape) -> Shape:
        return jnp.broadcast_shapes(
            tuple(shape), jnp.shape(self.loc), jnp.shape(self.scale)
        )

    def inverse_shape(self, shape: Shape) -> Shape:
        return self.forward_shape(shape)

    def __repr__(self) -> str:
        return f"AffineTransform(loc={self.loc!r}, scale={self.scale!r})"


class IndependentTransform(Transform):
    """``base_transform`` with ``reinterpreted_batch_ndims`` more event dims.

    The log-det is summed over the extra dims.
    """

    _pytree_data_fields = ("base_transform",)

    def __init__(self, base_transform: Transform, reinterpreted_batch_ndims: int):
        if not isinstance(base_transform, Transform):
            raise ArgumentError(
                f"IndependentTransform: base_transform must be a Transform, got "
                f"{base_transform!r}. Pass e.g. ExpTransform()."
            )
        self.base_transform = base_transform
        self.reinterpreted_batch_ndims = int(reinterpreted_batch_ndims)

    @property
    def domain(self) -> Constraint:  # type: ignore[override]
        n = self.reinterpreted_batch_ndims
        return constraints.independent(self.base_transform.domain, n)

    @property
    def codomain(self) -> Constraint:  # type: ignore[override]
        n = self.reinterpreted_batch_ndims
        return constraints.independent(self.base_transform.codomain, n)

    def __call__(self, x: ArrayLike) -> Array:
        return self.base_transform(x)

    def inv(self, y: ArrayLike) -> Array:
        return self.base_transform.inv(y)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        ladj = self.base_transform.log_abs_det_jacobian(x, y)
        return _sum_rightmost(ladj, self.reinterpreted_batch_ndims)

    def forward_shape(self, shape: Shape) -> Shape:
        return self.base_transform.forward_shape(shape)

    def inverse_shape(self, shape: Shape) -> Shape:
        return self.base_transform.inverse_shape(shape)

    def __repr__(self) -> str:
        return (
            f"IndependentTransform({self.base_transform!r}, "
            f"{self.reinterpreted_batch_ndims})"
        )


class ComposeTransform(Transform):
    """Apply ``parts`` in order: ``y = parts[-1](... parts[0](x))``.

    Args:
        parts: a sequence of transforms; event dims are tracked through the chain,
            and each part's log-det is summed over the dims the chain treats as
            event dims.
    """

    _pytree_data_fields = ("parts",)

    def __init__(self, parts: Sequence[Transform]):
        parts = tuple(parts)
        for p in parts:
            if not isinstance(p, Transform):
                raise ArgumentError(
                    f"ComposeTransform: every part must be a Transform, got {p!r}. "
                    "Pass a list of Transform objects."
                )
        self.parts = parts

    def _event_dims(self) -> tuple[int, int]:
        """Input and output event dims of the whole chain."""
        if not self.parts:
            return 0, 0
        d = self.parts[-1].codomain.event_dim
        for p in reversed(self.parts):
            d = p.domain.event_dim + max(d - p.codomain.event_dim, 0)
        d_in = d
        for p in self.parts:
            d = p.codomain.event_dim + max(d - p.domain.event_dim, 0)
        return d_in, d

    @property
    def domain(self) -> Constraint:  # type: ignore[override]
        if not self.parts:
            return constraints.real
        d_in, _ = self._event_dims()
        c = self.parts[0].domain
        return constraints.independent(c, d_in - c.event_dim)

    @property
    def codomain(self) -> Constraint:  # type: ignore[override]
        if not self.parts:
            return constraints.real
        _, d_out = self._event_dims()
        c = self.parts[-1].codomain
        return constraints.independent(c, d_out - c.event_dim)

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        for p in self.parts:
            x = p(x)
        return x

    def inv(self, y: ArrayLike) -> Array:
        y = jnp.asarray(y)
        for p in reversed(self.parts):
            y = p.inv(y)
        return y

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        x = jnp.asarray(x)
        if not self.parts:
            return jnp.zeros(x.shape, dtype=jnp.result_type(float, x))
        d, _ = self._event_dims()
        total: Any = 0.0
        for i, p in enumerate(self.parts):
            out = y if i == len(self.parts) - 1 else p(x)
            extra = d - p.domain.event_dim
            total = total + _sum_rightmost(p.log_abs_det_jacobian(x, out), extra)
            d = p.codomain.event_dim + extra
            x = jnp.asarray(out)
        return jnp.asarray(total)

    def forward_shape(self, shape: Shape) -> Shape:
        for p in self.parts:
            shape = p.forward_shape(shape)
        return tuple(shape)

    def inverse_shape(self, shape: Shape) -> Shape:
        for p in reversed(self.parts):
            shape = p.inverse_shape(shape)
        return tuple(shape)

    def __repr__(self) -> str:
        return f"ComposeTransform({list(self.parts)!r})"
