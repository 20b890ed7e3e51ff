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
``jsvi._typing``, ``jsvi.errors``. The wrappers that ``to_event``, ``expand``
and ``mask`` return (``Independent``, ``ExpandedDistribution``,
``MaskedDistribution``) live here too, beside the methods that make them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, PRNGKey, Shape, is_concrete
from jsvi.constraints import Constraint
from jsvi.distributions._util import (
    as_shape,
    check_args,
    check_expand,
    check_value,
    enable_validation,
    sum_rightmost,
    validation_enabled,
)
from jsvi.errors import ArgumentError, ShapeError
from jsvi.transforms import register_attribute_pytree

__all__ = [
    "Distribution",
    "ExpandedDistribution",
    "Independent",
    "MaskedDistribution",
    "enable_validation",
    "validation_enabled",
]

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
        register_attribute_pytree(cls)

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
        check_args(self)

    def _value_ok(self, value: Array) -> Array:
        return self.support.check(value)

    def _check_value(self, value: ArrayLike) -> None:
        """Shape and support checks of a ``log_prob`` argument (Python-side)."""
        check_value(self, value)

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
        check_expand(self, batch_shape)

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
        n = reinterpreted_batch_ndims
        if n is None:
            n = len(self.batch_shape)
        if n == 0:
            return self
        return Independent(self, n)

    def mask(self, mask: ArrayLike) -> Distribution:
        """Keep ``log_prob`` only where ``mask`` (broadcast over batch) is True."""
        if mask is True:
            return self
        return MaskedDistribution(self, mask)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape={self.batch_shape}, "
            f"event_shape={self.event_shape})"
        )


register_attribute_pytree(Distribution)


# ------------------------------------------------ batch-shape wrappers


def _check_base(where: str, base: Any) -> None:
    if not isinstance(base, Distribution):
        raise ArgumentError(
            f"{where}: base distribution must be a jsvi Distribution, got "
            f"{type(base).__name__}. Pass e.g. dist.Normal(0., 1.)."
        )


def _resolve_validate(base: Distribution, validate_args: bool | None) -> bool | None:
    return base._validate_args if validate_args is None else validate_args


class _Wrapper(Distribution):
    """A distribution around ``base_dist`` that, unless it says otherwise, has the
    base's shapes, support, gradient kind, moments, draws and argument checks."""

    _pytree_data_fields = ("base_dist",)
    base_dist: Distribution

    @property
    def batch_shape(self) -> Shape:
        return self.base_dist.batch_shape

    @property
    def event_shape(self) -> Shape:
        return self.base_dist.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        return self.base_dist.sample(key, sample_shape)

    @property
    def mean(self) -> Array:
        return self.base_dist.mean

    @property
    def variance(self) -> Array:
        return self.base_dist.variance

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        flags = self.base_dist.validation_flags()
        if value is not None:
            flags["value"] = self._value_ok(jnp.asarray(value))
        return flags


class Independent(_Wrapper):
    """Reinterpret the rightmost ``reinterpreted_batch_ndims`` batch dims as event.

    Args:
        base_dist: the distribution to wrap.
        reinterpreted_batch_ndims: how many batch dims become event dims.
    """

    has_enumerate_support = False  # the event holds several discrete values

    def __init__(
        self,
        base_dist: Distribution,
        reinterpreted_batch_ndims: int,
        *,
        validate_args: bool | None = None,
    ):
        _check_base("Independent", base_dist)
        n = reinterpreted_batch_ndims
        nb = len(base_dist.batch_shape)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= nb:
            raise ShapeError(
                f"Independent: reinterpreted_batch_ndims must be an int in [0, {nb}] "
                f"for a base with batch_shape {base_dist.batch_shape}, got {n!r}. "
                "Pass at most as many dims as the base has batch dims."
            )
        if isinstance(base_dist, Independent):
            n = n + base_dist.reinterpreted_batch_ndims
            base_dist = base_dist.base_dist
        self.base_dist = base_dist
        self.reinterpreted_batch_ndims = n
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    @property
    def batch_shape(self) -> Shape:
        b = self.base_dist.batch_shape
        return b[: len(b) - self.reinterpreted_batch_ndims]

    @property
    def event_shape(self) -> Shape:
        b = self.base_dist.batch_shape
        n = self.reinterpreted_batch_ndims
        return b[len(b) - n :] + self.base_dist.event_shape

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.independent(
            self.base_dist.support, self.reinterpreted_batch_ndims
        )

    def _log_prob(self, value: ArrayLike) -> Array:
        lp = self.base_dist._unchecked_log_prob(value)
        return sum_rightmost(lp, self.reinterpreted_batch_ndims)

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "Independent.expand")
        self._check_expand(batch_shape)
        b = self.base_dist.batch_shape
        n = self.reinterpreted_batch_ndims
        base = self.base_dist.expand(batch_shape + b[len(b) - n :])
        return Independent(base, n, validate_args=self._validate_args)


class ExpandedDistribution(_Wrapper):
    """``base_dist`` broadcast to a larger ``batch_shape`` (independent draws
    along expanded dims), without broadcasting its parameters.

    The base keeps the shapes of its parameters: ``log_prob`` scores the value under
    the base and broadcasts the result to the expanded batch shape, and ``sample``
    draws through the base with the expanded dims as extra sample dims. Work the
    base does per parameter element (``log(scale)`` of a ``Normal``, the
    normalization of a ``Categorical``) is then done once per base element, not
    once per expanded element. Plates expand their sites this way.

    A base with parameters (or a wrapper around one) gets size-1 dims on the left
    up to the expanded rank, a reshape that copies nothing: every leaf then has
    one dim per batch dim, so the dims ``jax.vmap`` adds in front of the leaves
    stay in front of the batch shape and line up with the value.

    Args:
        base_dist: the distribution to expand.
        batch_shape: the new batch shape; the base's batch shape must broadcast
            to it.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsvi.distributions import Normal
        >>> d = ExpandedDistribution(Normal(jnp.zeros(3), 1.0), (4, 3))
        >>> d.batch_shape, d.base_dist.batch_shape, d.log_prob(jnp.zeros(3)).shape
        ((4, 3), (1, 3), (4, 3))
    """

    def __init__(
        self,
        base_dist: Distribution,
        batch_shape: Sequence[int],
        *,
        validate_args: bool | None = None,
    ):
        _check_base("ExpandedDistribution", base_dist)
        batch_shape = as_shape(batch_shape, "ExpandedDistribution")
        base_dist._check_expand(batch_shape)
        if isinstance(base_dist, ExpandedDistribution):
            base_dist = base_dist.base_dist  # one level of laziness is enough
        extra = len(batch_shape) - len(base_dist.batch_shape)
        if extra > 0 and (
            base_dist.arg_constraints
            or type(base_dist).expand is not Distribution.expand
        ):
            base_dist = base_dist.expand((1,) * extra + tuple(base_dist.batch_shape))
        self.base_dist = base_dist
        self._expanded_shape = batch_shape
        self._base_ndim = len(base_dist.batch_shape)
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    @property
    def batch_shape(self) -> Shape:
        # Dims that ``vmap`` added in front of the base's batch shape stay in front.
        b = self.base_dist.batch_shape
        return b[: max(len(b) - self._base_ndim, 0)] + self._expanded_shape

    def sample(self, key: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        sample_shape = as_shape(sample_shape)
        target, base = self.batch_shape, self.base_dist.batch_shape
        k = len(target) - len(base)
        idx = [i for i, s in enumerate(base) if s == 1 and target[k + i] != 1]
        extra = tuple(target[k + i] for i in idx)
        draws = self.base_dist.sample(key, sample_shape + target[:k] + extra)
        ns = len(sample_shape) + k
        if idx:
            draws = jnp.squeeze(draws, axis=tuple(ns + len(idx) + i for i in idx))
            draws = jnp.moveaxis(
                draws, tuple(range(ns, ns + len(idx))), tuple(ns + i for i in idx)
            )
        return jnp.broadcast_to(draws, sample_shape + target + self.event_shape)

    def _log_prob(self, value: ArrayLike) -> Array:
        lp = self.base_dist._unchecked_log_prob(value)
        return jnp.broadcast_to(lp, jnp.broadcast_shapes(lp.shape, self.batch_shape))

    def _broadcast_univariate(self, out: Array) -> Array:
        full = self.batch_shape + self.event_shape
        return jnp.broadcast_to(out, jnp.broadcast_shapes(jnp.shape(out), full))

    def cdf(self, value: ArrayLike) -> Array:
        return self._broadcast_univariate(self.base_dist.cdf(value))

    def icdf(self, q: ArrayLike) -> Array:
        return self._broadcast_univariate(self.base_dist.icdf(q))

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(
            self.base_dist.mean, self.batch_shape + self.event_shape
        )

    @property
    def variance(self) -> Array:
        full = self.batch_shape + self.event_shape
        return jnp.broadcast_to(self.base_dist.variance, full)

    def enumerate_support(self, expand: bool = True) -> Array:
        values = self.base_dist.enumerate_support(expand=False)
        size = values.shape[0]
        ones = (1,) * len(self.batch_shape)
        values = values.reshape((size,) + ones + self.event_shape)
        if expand:
            values = jnp.broadcast_to(
                values, (size,) + self.batch_shape + self.event_shape
            )
        return values

    def validation_flags(self, value: ArrayLike | None = None) -> dict[str, Array]:
        return self.base_dist.validation_flags(value)

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "ExpandedDistribution.expand")
        self._check_expand(batch_shape)
        return self.base_dist.expand(batch_shape)


class MaskedDistribution(_Wrapper):
    """``base_dist`` whose ``log_prob`` is 0 wherever ``mask`` is False.

    Args:
        base_dist: the distribution to mask.
        mask: boolean array that broadcasts with ``base_dist.batch_shape`` (or a
            Python bool). Where it is larger (e.g. shaped like an enclosing
            plate), the base distribution is expanded to the broadcast shape.
    """

    def __init__(
        self,
        base_dist: Distribution,
        mask: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        _check_base("MaskedDistribution", base_dist)
        if not isinstance(mask, bool):
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_:
                raise ArgumentError(
                    f"MaskedDistribution: mask must be boolean, got dtype "
                    f"{mask.dtype}. Pass e.g. `x > 0` or `arr.astype(bool)`."
                )
            batch = base_dist.batch_shape
            try:
                batch = jnp.broadcast_shapes(mask.shape, batch)
            except ValueError:
                raise ShapeError(
                    f"MaskedDistribution: mask of shape {mask.shape} does not "
                    f"broadcast with batch_shape {batch}. Give the mask the batch shape "
                    "(or a shape that broadcasts with it)."
                ) from None
            if batch != base_dist.batch_shape:
                # a mask over a plate: the distribution takes the mask's batch shape
                base_dist = base_dist.expand(batch)
            mask = jnp.broadcast_to(mask, batch)  # aligned batch dims under vmap
        self.base_dist = base_dist
        self._mask = mask
        super().__init__(validate_args=_resolve_validate(base_dist, validate_args))

    def _value_ok(self, value: Array) -> Array:
        return self.support.check(value) | ~jnp.asarray(self._mask)

    def _log_prob(self, value: ArrayLike) -> Array:
        if self._mask is False:
            shape = jnp.broadcast_shapes(
                jnp.shape(value)[: jnp.ndim(value) - len(self.event_shape)],
                self.batch_shape,
            )
            return jnp.zeros(shape, dtype=jnp.result_type(float))
        lp = self.base_dist._unchecked_log_prob(value)
        return jnp.where(self._mask, lp, jnp.zeros((), dtype=lp.dtype))

    def enumerate_support(self, expand: bool = True) -> Array:
        return self.base_dist.enumerate_support(expand)

    def expand(self, batch_shape: int | Sequence[int]) -> Distribution:
        batch_shape = as_shape(batch_shape, "MaskedDistribution.expand")
        self._check_expand(batch_shape)
        return MaskedDistribution(
            self.base_dist.expand(batch_shape),
            self._mask,
            validate_args=self._validate_args,
        )
