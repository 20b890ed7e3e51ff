"""The functional SVI interface: ``SVI``, ``svi_init``, ``svi_update``,
``evaluate_loss`` and ``get_params`` (``svi_run`` lives in ``jsvi.loop``).

Everything that changes per step lives in ``SVIState`` (a pytree, ``jsvi.state``).
``SVI`` holds only static configuration (model, guide, optimizer, estimator) and is
hashable, so it can be a static argument of ``jax.jit``. Each ``SVI`` owns one
``jax.jit`` of each pure function in ``jsvi.step``; ``svi_update`` splits the
model arguments and calls the compiled step, nothing more.

May import: ``jsvi.step``, ``jsvi.loop``, ``jsvi.state``, ``jsvi.infer``,
``jsvi.core``, ``jsvi._args``; external: ``optax``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jsvi import loop
from jsvi._args import split_args
from jsvi._typing import Array, ModelFn, Params, PyTree
from jsvi.core.handlers import as_key
from jsvi.errors import ArgumentError, ShapeError, SupportError
from jsvi.infer import ELBO, check_signatures, constrain, unconstrain
from jsvi.state import ParamConstraints, SVIState
from jsvi.step import Compiled, compile_steps, raise_failed_checks

__all__ = ["SVI", "SVIState", "evaluate_loss", "get_params", "svi_init", "svi_update"]


@dataclasses.dataclass(frozen=True)
class SVI:
    """Static SVI configuration: model, guide, optimizer and ELBO estimator.

    Immutable and hashable (by its five fields), so
    ``jax.jit(jsvi.svi_update, static_argnums=0)`` works.

    Args:
        model: ``model(*args, **kwargs)`` using ``jsvi.sample``/``param``/``plate``.
        guide: the variational family, with the model's signature.
        optimizer: any ``optax.GradientTransformation``. One that takes extra
            arguments (``optax.GradientTransformationExtraArgs``, such as
            ``optax.contrib.reduce_on_plateau``) is given ``value=loss``.
        loss: an estimator such as ``jsvi.Trace_ELBO()``.
        validate: run ``jsvi.validate``'s checks in ``svi_init`` (default). They
            run once, while ``svi_init`` is traced, and add nothing to
            ``svi_update``; ``False`` skips them (and the init-value checks).

    Attributes:
        compiled: this configuration's compiled entry points (``jsvi.step``).
            They are created with it and dropped with it.

    Example:
        >>> import optax, jsvi
        >>> svi = jsvi.SVI(lambda: None, lambda: None, optax.adam(1e-2), jsvi.Trace_ELBO())
        >>> hash(svi) == hash(svi)
        True
    """

    model: ModelFn
    guide: ModelFn
    optimizer: optax.GradientTransformation
    loss: ELBO
    validate: bool = True
    compiled: Compiled = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("model", "guide"):
            if not callable(getattr(self, name)):
                raise ArgumentError(
                    f"SVI: {name} must be callable, got {type(getattr(self, name)).__name__}."
                )
        if not (hasattr(self.optimizer, "init") and hasattr(self.optimizer, "update")):
            raise ArgumentError(
                f"SVI: optimizer must be an optax.GradientTransformation, got "
                f"{type(self.optimizer).__name__}. Pass e.g. optax.adam(1e-3)."
            )
        if not isinstance(self.validate, bool):
            raise ArgumentError(f"SVI: validate must be True or False, got {self.validate!r}.")
        if not isinstance(self.loss, ELBO):
            raise ArgumentError(
                f"SVI: loss must be an ELBO estimator such as jsvi.Trace_ELBO(), got "
                f"{type(self.loss).__name__}."
            )
        check_signatures(self.model, self.guide)
        try:
            hash(self)
        except TypeError as e:
            raise ArgumentError(
                f"SVI: model, guide, optimizer and loss must be hashable ({e}). Wrap "
                "array-holding objects in a function."
            ) from None
        # Part of constructing the object (as a derived field), never changed after.
        object.__setattr__(self, "compiled", compile_steps(self))

    def __reduce__(self) -> tuple:
        # Copies and pickles are rebuilt from the configuration (with their own
        # compiled functions).
        return (SVI, (self.model, self.guide, self.optimizer, self.loss, self.validate))

    def init(self, rng_key: Any, *args: Any, **kwargs: Any) -> SVIState:
        """Same as ``jsvi.svi_init(self, ...)``."""
        return svi_init(self, rng_key, *args, **kwargs)

    def update(self, state: SVIState, *args: Any, **kwargs: Any) -> tuple[SVIState, Array]:
        """Same as ``jsvi.svi_update(self, ...)``."""
        return svi_update(self, state, *args, **kwargs)

    def evaluate_loss(self, state: SVIState, *args: Any, **kwargs: Any) -> Array:
        """Same as ``jsvi.evaluate_loss(self, ...)``."""
        return evaluate_loss(self, state, *args, **kwargs)

    def get_params(self, state: SVIState) -> dict[str, PyTree]:
        """Same as ``jsvi.get_params(self, state)``."""
        return get_params(self, state)

    def run(self, rng_key: Any, num_steps: int, *args: Any, **kwargs: Any):
        """Same as ``jsvi.svi_run(self, ...)``."""
        return loop.svi_run(self, rng_key, num_steps, *args, **kwargs)


def svi_init(svi: SVI, rng_key: Any, *args: Any, **kwargs: Any) -> SVIState:
    """Initialise parameters, optimizer and estimator state in one compiled call.

    Guide and model run once, traced inside ``jax.jit``: every ``param`` site's
    init value is mapped to unconstrained space, structural checks (model/guide
    sites, plate shapes) raise before anything is compiled, and value checks (init
    inside its constraint, validated distribution arguments and observations) are
    evaluated in the same program and raised afterwards.

    Nothing is drawn at random during init: latent sites take a fixed point of their
    support (0 for reals, 1 for positives, the midpoint of an interval, the uniform
    simplex, ...) and subsampling plates their first indices, so the init program
    compiles no samplers. Distribution arguments are therefore validated at that
    point; a param whose init value is computed from a latent draw is initialised at
    it too. Callable param inits still receive their own random keys.

    Args:
        svi: the configuration.
        rng_key: a ``jax.random.key``, raw ``PRNGKey`` or int.
        *args, **kwargs: model and guide arguments. Arrays (and Python floats) are
            traced; other Python values (ints, strings, ...) are static.
        init_params: (keyword-only, reserved) a dict param name -> constrained
            value to start from instead of the params' own inits, e.g.
            ``jsvi.get_params`` of an earlier fit (a warm start). Each must be a
            param of this SVI, with its shape, inside its constraint.

    Returns:
        The initial ``SVIState``.

    Raises:
        SupportError: a param init or an observation is outside its support.
        NonFiniteError: a log-density is not finite at the init point.
        ModelGuideMismatchError, ShapeError, SiteError: malformed model or guide.
        ArgumentError: ``init_params`` names a param this SVI does not have.
    """
    init_params = kwargs.pop("init_params", None)
    key = as_key(rng_key, "svi_init")
    dynamic, spec = split_args(args, kwargs, "svi_init")
    state, flags = svi.compiled.init(key, dynamic, spec)
    raise_failed_checks(flags, "svi_init")
    if init_params is not None:
        state = _warm_start(svi, state, init_params)
    return state


def _warm_start(svi: SVI, state: SVIState, init_params: Any) -> SVIState:
    """``state`` with the given constrained params (and the optimizer state
    initialised at them)."""
    if not isinstance(init_params, dict):
        raise ArgumentError(
            f"svi_init: init_params must be a dict param name -> constrained value, "
            f"got {type(init_params).__name__}. Pass e.g. jsvi.get_params(svi, state)."
        )
    found = state.param_constraints.as_dict()
    params = dict(state.params)
    for name, value in init_params.items():
        if name not in found:
            raise ArgumentError(
                f"svi_init: init_params has {name!r}, which is not a param of this "
                f"model and guide (they have {sorted(found)}). Drop it or rename it."
            )
        value_u = unconstrain(value, found[name])
        if jax.tree.structure(value_u) != jax.tree.structure(params[name]) or [
            v.shape for v in jax.tree.leaves(value_u)
        ] != [v.shape for v in jax.tree.leaves(params[name])]:
            raise ShapeError(
                f"svi_init: init_params[{name!r}] has shape "
                f"{jax.tree.map(lambda v: v.shape, value_u)}, but param {name!r} has "
                f"{jax.tree.map(lambda v: v.shape, params[name])}. Give it the param's "
                "shape."
            )
        leaves = jax.tree.leaves(value_u)
        if all(isinstance(v, jax.Array) and not isinstance(v, jax.core.Tracer) for v in leaves):
            if not all(bool(jnp.all(jnp.isfinite(v))) for v in leaves):
                raise SupportError(
                    f"svi_init: init_params[{name!r}] lies outside (or on the boundary "
                    f"of) its constraint {found[name]!r}. Give a value strictly inside it."
                )
        params[name] = jax.tree.map(
            lambda v, old: jnp.asarray(v, old.dtype), value_u, params[name]
        )
    return state._replace(params=params, opt_state=svi.optimizer.init(params))


def svi_update(svi: SVI, state: SVIState, *args: Any, **kwargs: Any) -> tuple[SVIState, Array]:
    """Take one optimizer step on the estimator's surrogate loss.

    Pure and compiled: the same state and inputs give the same result, and it works
    under ``jax.jit``, ``jax.lax.scan`` and ``jax.vmap`` over states. The compiled
    step is ``jsvi.step.update``, one program per argument structure and shapes.

    Returns:
        ``(new_state, loss)``, with ``loss`` the -ELBO estimate at ``state``'s
        parameters (before the step).

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.param("mu", 0.0), 1.0), obs=2.0)
        >>> svi = jsvi.SVI(model, lambda: None, optax.sgd(0.5), jsvi.Trace_ELBO())
        >>> state = jsvi.svi_init(svi, jax.random.key(0))
        >>> state, loss = jsvi.svi_update(svi, state)
        >>> float(jsvi.get_params(svi, state)["mu"])
        1.0
    """
    dynamic, spec = split_args(args, kwargs, "svi_update")
    return svi.compiled.update(state, dynamic, spec)


def evaluate_loss(svi: SVI, state: SVIState, *args: Any, **kwargs: Any) -> Array:
    """The -ELBO estimate at ``state`` without taking a step.

    It uses the same draw the next ``svi_update`` would, so it equals the loss that
    ``svi_update(svi, state, ...)`` returns.
    """
    dynamic, spec = split_args(args, kwargs, "evaluate_loss")
    return svi.compiled.evaluate(state, dynamic, spec)


@jax.jit
def _constrain_all(params: Params, constraints: ParamConstraints) -> dict[str, PyTree]:
    cs = constraints.as_dict()
    return {name: constrain(value, cs[name]) for name, value in params.items()}


def get_params(svi: SVI, state: SVIState) -> dict[str, PyTree]:
    """Constrained parameter values by name (pure; the state is unchanged)."""
    del svi
    return _constrain_all(state.params, state.param_constraints)
