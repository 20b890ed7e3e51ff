"""The primitives users write models and guides with.

``sample``, ``param``, ``deterministic``, ``factor`` and ``prng_key`` build a
``Message`` and send it through the handler stack; ``plate`` (re-exported here)
lives in ``jsvi.core.plates``.

May import: ``jsvi.core.runtime``, ``jsvi.core.plates``, ``jsvi.core.local_params``,
``jsvi.core._names``, ``jsvi.constraints``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi import constraints
from jsvi._typing import (
    Array,
    ArrayLike,
    DistributionLike,
    PyTree,
    Shape,
    is_concrete,
    shape_of,
)
from jsvi.core._names import check_name, missing_key
from jsvi.core.local_params import subsample_param
from jsvi.core.plates import plate, subsample_indices
from jsvi.core.runtime import Message, apply_stack
from jsvi.errors import ArgumentError, ShapeError, SiteError

__all__ = [
    "FactorDensity",
    "deterministic",
    "draw",
    "factor",
    "param",
    "plate",
    "prng_key",
    "sample",
    "subsample_indices",
]


def draw(msg: Message) -> Array:
    if msg.rng_key is None:
        raise missing_key("sample", msg.name)
    return msg.fn.sample(msg.rng_key)


def _check_obs_shape(msg: Message) -> None:
    """Inside vectorized plates, ``obs`` must line up with the plate dims."""
    frames = [f for f in msg.cond_indep_stack if f.vectorized]
    if not frames:
        return
    fn = msg.fn
    event_ndim = len(fn.event_shape)
    obs_shape = shape_of(msg.value)
    obs_batch = obs_shape[: len(obs_shape) - event_ndim]
    for f in frames:
        if len(obs_batch) >= -f.dim and obs_batch[f.dim] not in (1, f.subsample_size):
            raise ShapeError(
                f"sample site {msg.name!r}: obs has shape {obs_shape}, size "
                f"{obs_batch[f.dim]} at dim {f.dim}, but plate {f.name!r} has "
                f"{f.subsample_size} elements there. Index the data with the plate's "
                "subsample indices, or give obs that size at that dim."
            )
    try:
        joint = np.broadcast_shapes(obs_batch, tuple(fn.batch_shape))
    except ValueError:
        joint = None
    if joint != tuple(fn.batch_shape):
        raise ShapeError(
            f"sample site {msg.name!r}: obs batch shape {obs_batch} does not broadcast "
            f"to the site's batch shape {tuple(fn.batch_shape)} (plates: "
            f"{', '.join(f'{f.name!r} at dim {f.dim}' for f in frames)}). Reshape "
            "obs to the batch shape (for example drop a trailing singleton dim), or "
            "declare event dims with .to_event(n)."
        )


def sample(
    name: str,
    fn: DistributionLike,
    obs: ArrayLike | None = None,
    infer: dict[str, Any] | None = None,
    obs_mask: ArrayLike | None = None,
) -> Array:
    """Declare a random variable; return its value.

    Args:
        name: a name unique within one run of the model (or guide).
        fn: the distribution the value is drawn from (or scored under, if observed).
        obs: an observed value; the site is then conditioned on it.
        infer: per-site options for inference, e.g. ``{"enumerate": "parallel"}``
            or ``{"baseline": {...}}``.
        obs_mask: a boolean array, broadcastable to ``fn``'s batch shape (plates
            included), for data with missing entries: ``name`` observes ``obs``
            where the mask is True, and the entries where it is False become a
            latent site ``name + "_unobserved"`` (full shape, its log-density
            masked to those entries) that the guide must sample, so they are
            imputed. ``obs`` there is ignored (it may be NaN).

    Returns:
        The value: ``obs`` when observed, otherwise a draw from ``fn`` (or the value
        a handler such as ``replay``/``condition``/``substitute`` supplies), with
        shape ``fn.batch_shape + fn.event_shape`` after plates broadcast it. With
        ``obs_mask``, ``obs`` where the mask is True and the imputed values
        elsewhere.

    Example:
        >>> import jax, jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     return jsvi.sample("z", dist.Normal(0.0, 1.0))
        >>> handlers.seed(model, rng_key=0)().shape
        ()
        >>> def missing(y):
        ...     with jsvi.plate("data", 3):
        ...         return jsvi.sample("y", dist.Normal(0.0, 1.0), obs=y,
        ...                            obs_mask=~jnp.isnan(y))
        >>> tr = handlers.trace(handlers.seed(missing, rng_key=0)).get_trace(
        ...     jnp.array([1.0, jnp.nan, 3.0]))
        >>> tr["y_unobserved"].is_observed, bool(jnp.isfinite(tr["y"].value).all())
        (False, True)
    """
    check_name("sample", name)
    if isinstance(fn, type):
        raise ArgumentError(
            f"sample site {name!r}: fn is the class {fn.__name__}, not a distribution. "
            f"Create one with its arguments, e.g. {fn.__name__}(...) such as "
            "jsvi.distributions.Normal(0., 1.)."
        )
    if not all(hasattr(fn, a) for a in ("sample", "log_prob", "batch_shape")):
        raise ArgumentError(
            f"sample site {name!r}: fn must be a distribution, got "
            f"{type(fn).__name__}. Pass e.g. jsvi.distributions.Normal(0., 1.)."
        )
    if infer is not None and not isinstance(infer, dict):
        raise ArgumentError(
            f"sample site {name!r}: infer must be a dict, got {type(infer).__name__}."
        )
    if infer and infer.get("enumerate") not in _ENUMERATE_OPTIONS:
        raise SiteError(
            f"sample site {name!r}: infer['enumerate'] is {infer['enumerate']!r}, "
            f"which is not an option. Use one of {sorted(o for o in _ENUMERATE_OPTIONS if o)}"
            " (or leave it out)."
        )
    if obs_mask is not None:
        return _masked_observe(name, fn, obs, infer, obs_mask)
    return _sample_site(name, fn, obs, infer)


def _sample_site(
    name: str, fn: Any, obs: Any, infer: dict | None, mask: Any = None
) -> Array:
    msg = Message(
        kind="sample",
        name=name,
        fn=fn,
        value=obs,
        is_observed=obs is not None,
        infer=dict(infer or {}),
        mask=mask,
        default=draw,
    )
    apply_stack(msg)
    if msg.is_observed:
        _check_obs_shape(msg)
    if "do_value" in msg.kwargs:  # handlers.do: the site is drawn, its value replaced
        return msg.kwargs["do_value"]
    return msg.value


def _masked_observe(name: str, fn: Any, obs: Any, infer: dict | None, obs_mask: Any) -> Array:
    """``obs`` where ``obs_mask`` holds, a latent ``name_unobserved`` elsewhere."""
    if obs is None:
        raise ArgumentError(
            f"sample site {name!r}: obs_mask is given but obs is None. obs_mask "
            "marks which entries of obs are observed; pass obs (with anything, e.g. "
            "NaN, where the mask is False), or leave obs_mask out to draw every entry."
        )
    if isinstance(obs_mask, bool) or not jnp.issubdtype(
        getattr(obs_mask, "dtype", type(obs_mask)), jnp.bool_
    ):
        raise ArgumentError(
            f"sample site {name!r}: obs_mask must be a boolean array, got "
            f"{getattr(obs_mask, 'dtype', type(obs_mask).__name__)}. Pass e.g. "
            "obs_mask=~jnp.isnan(y)."
        )
    unobserved = _sample_site(f"{name}_unobserved", fn, None, infer, ~obs_mask)
    event_ndim = len(getattr(fn, "event_shape", ()))
    batch_mask = jnp.reshape(obs_mask, shape_of(obs_mask) + (1,) * event_ndim)
    value = jnp.where(batch_mask, jnp.asarray(obs), unobserved)
    return _sample_site(name, fn, value, infer, obs_mask)


_ENUMERATE_OPTIONS = frozenset({None, "parallel", "sequential", "flat"})


def _param_default(msg: Message) -> PyTree:
    (init_value,) = msg.args
    if init_value is None:
        raise SiteError(
            f"param {msg.name!r}: no init_value, and no param of that name was "
            "declared before it in this run (or in the guide, for a model param). "
            "Give init_value where the param is first declared."
        )
    if callable(init_value):
        if msg.rng_key is None:
            raise missing_key("param", msg.name)
        try:
            n_args = len(inspect.signature(init_value).parameters)
        except (TypeError, ValueError):
            n_args = 1
        if n_args == 0:
            raise ArgumentError(
                f"param {msg.name!r}: init_value is a callable that takes no arguments, "
                "but a callable init is called with a random key. Write it as "
                "`lambda key: ...` (and use the key, or ignore it), or pass the value."
            )
        init_value = init_value(msg.rng_key)
    for leaf in jax.tree.leaves(init_value):
        if isinstance(leaf, (str, bytes)) or not (
            isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, bool))
            or hasattr(leaf, "__jax_array__")
            or not is_concrete(leaf)
        ):
            raise ArgumentError(
                f"param {msg.name!r}: init_value holds a {type(leaf).__name__} "
                f"({leaf!r:.40}). Pass a number, an array, a pytree of arrays, or a "
                "callable `key -> value`."
            )
    return jax.tree.map(jnp.asarray, init_value)


def param(
    name: str,
    init_value: PyTree = None,
    constraint: Any = None,
    event_dim: int | None = None,
) -> PyTree:
    """Declare a learnable parameter; return its current (constrained) value.

    Args:
        name: the parameter's name; model and guide may share a parameter by name.
        init_value: an array or scalar, a pytree of arrays (e.g. network weights),
            or a callable ``rng_key -> value``. Must satisfy ``constraint``. Left
            out, the param is one declared earlier under ``name`` (earlier in the
            same run, or in the guide for a param the model reads), with that
            declaration's value and constraint (as Pyro's ``param(name)``).
        constraint: the parameter's support (default ``constraints.real``). It is
            optimized in unconstrained space through ``biject_to(constraint)``.
        event_dim: how many rightmost dims form one event (defaults to the
            constraint's own ``event_dim``). Given inside vectorized plates, it
            makes the param local: its dim ``plate.dim - event_dim`` holds the
            plate's full ``size`` elements, and inside a subsampled plate the
            value read is the rows of the current subsample (Pyro's local
            parameters); the stored parameter keeps all ``size`` rows and a step's
            gradient reaches only the rows it read.

    Returns:
        The parameter's value in constrained space. With no handler active this is
        ``init_value`` itself (its subsample rows, for a local param).

    Raises:
        ShapeError: a local param's size at its plate dim is neither the plate's
            size nor 1.
        SiteError: no ``init_value`` and no earlier declaration of ``name``.

    Example:
        >>> import jax.numpy as jnp, jsvi
        >>> from jsvi import constraints
        >>> float(jsvi.param("s", 2.0, constraint=constraints.positive))
        2.0
        >>> with jsvi.plate("data", 5, subsample=jnp.array([1, 3])):
        ...     loc = jsvi.param("loc", jnp.arange(5.0), event_dim=0)
        >>> loc.tolist()
        [1.0, 3.0]
    """
    check_name("param", name)
    if constraint is None:
        # without an init the param takes its earlier declaration's constraint
        constraint = None if init_value is None else constraints.real
    elif not isinstance(constraint, constraints.Constraint):
        known = getattr(constraints, constraint, None) if isinstance(constraint, str) else None
        hint = (
            f"Pass the object: constraint=jsvi.constraints.{constraint}."
            if isinstance(known, constraints.Constraint)
            else "Pass one of jsvi.constraints (e.g. constraints.positive)."
        )
        raise ArgumentError(
            f"param {name!r}: constraint must be a jsvi constraint, got "
            f"{type(constraint).__name__} {constraint!r}. {hint}"
        )
    msg = Message(
        kind="param",
        name=name,
        args=(init_value,),
        constraint=constraint,
        event_dim=event_dim,
        default=_param_default,
    )
    return subsample_param(name, apply_stack(msg).value, event_dim)


def deterministic(name: str, value: ArrayLike) -> Array:
    """Record a value computed from other sites so it appears in traces.

    Example:
        >>> import jsvi
        >>> float(jsvi.deterministic("twice", 2.0 * 3.0))
        6.0
    """
    check_name("deterministic", name)
    msg = Message(kind="deterministic", name=name, value=value)
    return apply_stack(msg).value


class FactorDensity:
    """A stand-in distribution whose log-density is a given array (for ``factor``)."""

    has_rsample = True
    is_discrete = False
    event_shape: Shape = ()

    def __init__(self, log_factor: ArrayLike):
        self.log_factor = jnp.asarray(log_factor)
        self.batch_shape = tuple(self.log_factor.shape)

    def sample(self, key: Any, sample_shape: Shape = ()) -> Array:
        del key
        return jnp.zeros(tuple(sample_shape) + self.batch_shape)

    def log_prob(self, value: ArrayLike) -> Array:
        del value
        return self.log_factor

    def expand(self, batch_shape: Shape) -> FactorDensity:
        return FactorDensity(jnp.broadcast_to(self.log_factor, tuple(batch_shape)))


def factor(name: str, log_factor: ArrayLike) -> None:
    """Add ``log_factor`` to the log-density of the enclosing model.

    The site is observed, so it needs no guide counterpart; plates, ``scale`` and
    ``mask`` apply to it as to any observed site.
    """
    lf = jnp.asarray(log_factor)
    sample(name, FactorDensity(lf), obs=jnp.zeros(lf.shape))


def prng_key() -> Array | None:
    """Return a fresh key from the enclosing ``seed`` handler (``None`` without one)."""
    msg = Message(kind="prng_key", name="_jsvi/prng_key")
    return apply_stack(msg).rng_key
