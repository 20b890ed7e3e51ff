"""The ``Distribution`` base class, argument/value validation and shared helpers.

Every distribution is a JAX pytree (registered automatically for every subclass):
array parameters are leaves, and shapes, flags and constraints are static aux data,
so ``jax.jit``/``jax.vmap`` of functions taking or returning distributions work.
``batch_shape`` is derived from the parameters' shapes (using each parameter's
constraint ``event_dim``), so a distribution returned from ``vmap`` reports the
mapped axis as a batch dim.

Validation: when it is on for a distribution (``validate_args=True``, or ``None``
and the module default set by :func:`enable_validation`) and the arguments are
concrete, the constructor checks ``arg_constraints`` and ``log_prob`` checks the
value's support, raising ``ArgumentError``/``SupportError``. Traced arguments are
never checked in Python; :meth:`Distribution.validation_flags` returns the same
checks as boolean arrays for deferred checking inside ``jit``.

May import (within jsvi): ``jsvi.constraints``, ``jsvi.transforms``,
``jsvi._typing``, ``jsvi.errors``. The wrappers used by ``to_event``, ``expand`` and
``mask`` live in ``jsvi.distributions.wrappers`` and are imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape, is_concrete
from jsvi.constraints import Constraint
from jsvi.errors import ArgumentError, ShapeError, SupportError
from jsvi.transforms import _register_attribute_pytree

__all__ = [
    "Distribution",
    "enable_validation",
    "validation_enabled",
]

_VALIDATION: list[bool] = [True]


def enable_validation(flag: bool = True) -> None:
    """Set the default of ``validate_args`` for distributions created afterwards.

    Args:
        flag: True (the initial default) checks arguments and observed values of
            every distribution built with ``validate_args=None``; False skips the
            checks (no extra work at all).

    Example:
        >>> enable_validation(False)
        >>> enable_validation(True)
    """
    _VALIDATION[0] = bool(flag)


def validation_enabled() -> bool:
    """The current default of ``validate_args``."""
    return _VALIDATION[0]


# ------------------------------------------------------------------- helpers


def as_shape(shape: int | Sequence[int], where: str = "sample_shape") -> Shape:
    """Normalize a shape given as an int or a sequence of ints to a tuple."""
    if isinstance(shape, int | np.integer):
        return (int(shape),)
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise ArgumentError(
            f"{where}: expected a tuple of ints, got {shape!r}. Pass e.g. (100,)."
        ) from None


def float_dtype(*args: Any) -> Any:
    """The floating dtype parameters built from ``args`` should have."""
    dtype = jnp.result_type(float, *args)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def int_dtype() -> Any:
    """The default integer dtype (int32, or int64 under ``jax_enable_x64``)."""
    return jnp.asarray(0).dtype


def promote_params(where: str, **params: ArrayLike) -> list[Array]:
    """Cast parameters to one float dtype and broadcast them to one shape.

    Raises:
        ShapeError: if the shapes do not broadcast.
    """
    dtype = float_dtype(*params.values())
    arrays = [jnp.asarray(v, dtype=dtype) for v in params.values()]
    shapes = [a.shape for a in arrays]
    try:
        shape = jnp.broadcast_shapes(*shapes)
    except ValueError:
        desc = ", ".join(f"{k} {s}" for k, s in zip(params, shapes, strict=True))
        raise ShapeError(
            f"{where}: parameter shapes do not broadcast ({desc}). Give the "
            "parameters compatible shapes."
        ) from None
    return [jnp.broadcast_to(a, shape) for a in arrays]


def sum_rightmost(x: Array, n: int) -> Array:
    """Sum the ``n`` rightmost dims of ``x``."""
    return jnp.sum(x, axis=tuple(range(-n, 0))) if n > 0 else x


def _format_bad(value: Any, ok: Any, event_dim: int) -> str:
    """The entries of ``value`` where ``ok`` is False, for error messages."""
    try:
        v = np.asarray(value)
        ok_np = np.asarray(ok, dtype=bool)
        event = v.shape[v.ndim - event_dim :] if event_dim else ()
        v = np.broadcast_to(v, ok_np.shape + event)
        bad = v[~ok_np]
    except (ValueError, TypeError, IndexError):
        bad = np.asarray(value)
    return np.array2string(bad, threshold=8, edgeitems=3)


def _arg_flags(d: Distribution) -> dict[str, Array]:
    return {k: jnp.all(v) for k, v in d.validation_flags().items()}


def _value_flag(d: Distribution, value: Array) -> Array:
    return jnp.all(d._value_ok(value))


_arg_flags_jit = jax.jit(_arg_flags)
_value_flag_jit = jax.jit(_value_flag)


def _compiled(fn: Any, fallback: Any, *args: Any) -> Any:
    """Run a check as one compiled call (cheaper than op-by-op on new shapes),
    falling back to op-by-op evaluation when ``jit`` cannot hash the static data
    of a user-defined subclass."""
    try:
        return fn(*args)
    except TypeError:
        return fallback(*args)


# ---------------------------------------------------------------------- base


class Distribution:
    """Base class of jsvi distributions.

    Subclasses set ``arg_constraints`` (name -> constraint), ``support``,
    ``has_rsample`` and implement ``sample`` and ``_log_prob``. Parameters are
    stored as attributes named like the argument (or with a leading underscore
    when a property computes the other parametrization, e.g. ``probs``/``logits``).
    """

    arg_constraints: ClassVar[Mapping[str, Constraint]] = {}
    support: Constraint = constraints.real
    has_rsample: bool = False
    has_enumerate_support: bool = False
    _pytree_data_fields: ClassVar[tuple[str, ...]] = ()
    _validate_args: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_attribute_pytree(cls)

    def __init__(self, *, validate_args: bool | None = None):
        self._validate_args = (
            validation_enabled() if validate_args is None else bool(validate_args)
        )
        if self._validate_args:
            self._check_args()

    # -------------------------------------------------------------- shapes

    def _param(self, name: str) -> Any:
        d = self.__dict__
        return d[name] if name in d else d.get("_" + name)

    @property
    def batch_shape(self) -> Shape:
        """Shape over which parameters are batched (independent, not identical)."""
        shapes = []
        for name, c in self.arg_constraints.items():
            value = self._param(name)
            if value is not None:
                shape = jnp.shape(value)
                shapes.append(shape[: len(shape) - c.event_dim])
        return tuple(jnp.broadcast_shapes(*shapes)) if shapes else ()

    @property
    def event_shape(self) -> Shape:
        """Shape of one draw (its dims are summed in ``log_prob``)."""
        return ()

    def shape(self, sample_shape: int | Sequence[int] = ()) -> Shape:
        """``sample_shape + batch_shape + event_shape``."""
        return as_shape(sample_shape) + self.batch_shape + self.event_shape

    @property
    def is_discrete(self) -> bool:
        """Whether the support is discrete."""
        return self.support.is_discrete

    # --------------------------------------------------------- validation

    def _all_concrete(self) -> bool:
        return all(is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(self))

    def _check_args(self) -> None:
        if not self.arg_constraints or not self._all_concrete():
            return
        for arg, ok in _compiled(_arg_flags_jit, _arg_flags, self).items():
            if not is_concrete(ok) or bool(ok):  # staged out: nothing to check
                continue
            c, value = self.arg_constraints[arg], self._param(arg)
            raise ArgumentError(
                f"{type(self).__name__}: argument {arg!r} must satisfy {c!r}, got "
                f"{_format_bad(value, c.check(value), c.event_dim)}. Pass values "
                "inside the support, or validate_args=False to skip this check."
            )

    def _value_ok(self, value: Array) -> Array:
        return self.support.check(value)

    def _check_value(self, value: ArrayLike) -> None:
        """Shape and support checks of a ``log_prob`` argument (Python-side)."""
        name = type(self).__name__
        value_shape = jnp.shape(value)
        full = self.batch_shape + self.event_shape
        try:
            jnp.broadcast_shapes(value_shape, full)
        except ValueError:
            raise ShapeError(
                f"{name}.log_prob: value of shape {value_shape} does not broadcast "
                f"with batch_shape + event_shape {full}. Pass a value whose "
                f"rightmost dims are {self.event_shape} and broadcast with the batch."
            ) from None
        if len(value_shape) < len(self.event_shape):
            raise ShapeError(
                f"{name}.log_prob: value of shape {value_shape} has fewer dims than "
                f"event_shape {self.event_shape}. Pass one full event per draw."
            )
        if not (is_concrete(value) and self._all_concrete()):
            return
        value = jnp.asarray(value)
        ok_all = _compiled(_value_flag_jit, _value_flag, self, value)
        if is_concrete(ok_all) and not bool(ok_all):
            ok = self._value_ok(value)
            support = self.support
            raise SupportError(
                f"{name}.log_prob: value {_format_bad(value, ok, support.event_dim)} "
                f"is outside the support {support!r}. Pass values inside the "
                "support, or validate_args=False to skip this check."
            )

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        """The argument (and value) checks as boolean arrays; works when traced.

        Args:
            value: optional observed value (shape ``sample_shape + batch_shape +
                event_shape``) whose support check is added under ``"value"``.

        Returns:
            A dict from argument name (and ``"value"``) to a boolean array that is
            all-True iff the argument (value) is valid.
        """
        flags = {}
        for arg, c in self.arg_constraints.items():
            param = self._param(arg)
            if param is not None:
                flags[arg] = c.check(param)
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags

    # ----------------------------------------------------------- densities

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        """Draw samples of shape ``sample_shape + batch_shape + event_shape``.

        Args:
            key: a typed key (``jax.random.key``) or a raw ``PRNGKey``.
            sample_shape: leading shape of independent draws.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement sample.")

    def log_prob(self, value: ArrayLike) -> Array:
        """Log-density of ``value``, summed over event dims.

        Args:
            value: array of shape ``sample_shape + batch_shape + event_shape`` (or
                broadcastable with it).

        Returns:
            Array of shape ``sample_shape + batch_shape``.

        Raises:
            SupportError: if validation is on and a concrete value lies outside
                ``support``.
        """
        if self._validate_args:
            self._check_value(value)
        return self._log_prob(value)

    def _log_prob(self, value: ArrayLike) -> Array:
        raise NotImplementedError(f"{type(self).__name__} does not implement log_prob.")

    def _unchecked_log_prob(self, value: ArrayLike) -> Array:
        """``log_prob`` without value validation (used by wrappers)."""
        if type(self)._log_prob is Distribution._log_prob:
            return self.log_prob(value)
        return self._log_prob(value)

    @property
    def mean(self) -> Array:
        """Mean, shape ``batch_shape + event_shape`` (nan/inf where undefined)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form mean.")

    @property
    def variance(self) -> Array:
        """Variance, shape ``batch_shape + event_shape`` (nan/inf where undefined)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form variance.")

    @property
    def stddev(self) -> Array:
        """Standard deviation, ``sqrt(variance)``."""
        return jnp.sqrt(self.variance)

    def cdf(self, value: ArrayLike) -> Array:
        """Cumulative distribution function (univariate families)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form cdf.")

    def icdf(self, q: ArrayLike) -> Array:
        """Inverse cdf (univariate families)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form icdf.")

    def enumerate_support(self, expand: bool = True) -> Array:
        """All values of a finite discrete support.

        Args:
            expand: broadcast over the batch shape (True) or keep size-1 batch dims.

        Returns:
            Array of shape ``(support_size,) + batch_shape + event_shape``
            (``batch_shape`` replaced by ones when ``expand=False``).
        """
        raise NotImplementedError(
            f"{type(self).__name__}.enumerate_support: the support is not finite. "
            "Only distributions with has_enumerate_support=True can be enumerated."
        )

    # ------------------------------------------------------ reshaping API

    def _check_expand(self, batch_shape: Shape) -> None:
        try:
            ok = jnp.broadcast_shapes(self.batch_shape, batch_shape) == batch_shape
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(
                f"{type(self).__name__}.expand: cannot expand batch_shape "
                f"{self.batch_shape} to {batch_shape}. Each dim of the new shape must "
                "equal the old one or replace a dim of size 1, and new dims go on the "
                "left."
            )

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        """Broadcast to a larger ``batch_shape`` (new dims on the left).

        Raises:
            ShapeError: if the current batch shape does not broadcast to it.
        """
        if not self.arg_constraints:  # nothing to broadcast: wrap
            return self._expand_lazily(batch_shape)
        batch_shape = as_shape(batch_shape, f"{type(self).__name__}.expand")
        self._check_expand(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        return self._broadcast_params(batch_shape)

    def _expand_lazily(self, batch_shape: Shape) -> Distribution:
        """``expand`` without broadcasting parameters: an ``ExpandedDistribution``
        whose ``log_prob`` scores under this distribution and broadcasts the result.

        Plates expand their sites with it (the core looks for this method and falls
        back to ``expand``), so per-element work on the parameters is not repeated
        for every element of the plate.

        Raises:
            ShapeError: if the current batch shape does not broadcast to it.
        """
        batch_shape = as_shape(batch_shape, f"{type(self).__name__}.expand")
        self._check_expand(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        from jsvi.distributions.wrappers import ExpandedDistribution  # noqa: PLC0415

        return ExpandedDistribution(self, batch_shape)

    def _broadcast_params(self, batch_shape: Shape) -> Distribution:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for arg, c in self.arg_constraints.items():
            key = arg if arg in self.__dict__ else "_" + arg
            value = self.__dict__.get(key)
            if value is None:
                continue
            shape = jnp.shape(value)
            event = shape[len(shape) - c.event_dim :]
            new.__dict__[key] = jnp.broadcast_to(value, batch_shape + event)
        return new

    def expand_by(self, sample_shape: int | Sequence[int]) -> Distribution:
        """``expand(sample_shape + batch_shape)``."""
        return self.expand(as_shape(sample_shape) + self.batch_shape)

    def to_event(self, reinterpreted_batch_ndims: int | None = None) -> Distribution:
        """Treat the rightmost batch dims as event dims (all of them by default)."""
        from jsvi.distributions.wrappers import Independent  # noqa: PLC0415

        n = reinterpreted_batch_ndims
        if n is None:
            n = len(self.batch_shape)
        if n == 0:
            return self
        return Independent(self, n)

    def mask(self, mask: ArrayLike) -> Distribution:
        """Keep ``log_prob`` only where ``mask`` (broadcast over batch) is True."""
        from jsvi.distributions.wrappers import MaskedDistribution  # noqa: PLC0415

        if mask is True:
            return self
        return MaskedDistribution(self, mask)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape={self.batch_shape}, "
            f"event_shape={self.event_shape})"
        )


_register_attribute_pytree(Distribution)
